"""AdaptedModel: a frozen timm ViT, one adaptation method, and a head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbones import BackboneInfo, create_vit, describe, weights_hash
from .methods import Method, MethodConfig, build_method


def pool_tokens(x: torch.Tensor, output: str, num_prefix: int, num_prompts: int) -> torch.Tensor:
    """Reduce final tokens (B, prefix + prompts + patches, D) to (B, D)."""
    if output == "cls":
        return x[:, 0]
    if output == "image-pool":
        return x[:, num_prefix + num_prompts :].mean(dim=1)
    if output == "prompt-pool":
        return x[:, num_prefix : num_prefix + num_prompts].mean(dim=1)
    if output == "global-pool":
        return x.mean(dim=1)
    raise ValueError(f"unknown output '{output}'")


def resolve_output(config: MethodConfig, backbone: nn.Module) -> str:
    """`auto` reads the class token when the backbone pools by token, else the mean of patch tokens."""
    if config.output != "auto":
        return config.output
    return (
        "cls" if getattr(backbone, "global_pool", "token") == "token" and backbone.num_prefix_tokens else "image-pool"
    )


class AdaptedModel(nn.Module):
    """Frozen backbone + method + head. Only the method's choice of parameters requires gradients.

    Args:
        backbone: A timm VisionTransformer created without a head (``num_classes=0``).
        info: Facts about the backbone (see :func:`vptune.backbones.describe`).
        method: The adaptation method (owns prompts/adapters; may unfreeze backbone parts).
        num_classes: Size of the fresh head.
        backbone_hash: Fingerprint of the backbone's pretrained weights, recorded in artifacts.
    """

    def __init__(
        self,
        backbone: nn.Module,
        info: BackboneInfo,
        method: Method,
        num_classes: int,
        backbone_hash: str = "",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.info = info
        self.method = method
        self.num_classes = num_classes
        self.backbone_hash = backbone_hash or weights_hash(backbone)
        self.output = resolve_output(method.config, backbone)
        self.grad_checkpointing = False
        backbone.requires_grad_(False)
        method.attach(backbone)
        self.head = method.build_head(info.embed_dim, num_classes)
        self.train()

    def train(self, mode: bool = True) -> AdaptedModel:
        """Set train mode; a frozen backbone always stays in eval mode (no dropout or drop-path)."""
        super().train(mode)
        if not self.method.trains_backbone:
            self.backbone.eval()
            for module in self.backbone.modules():  # modules a method injected into the backbone
                if getattr(module, "vptune_trainable", False):
                    module.train(mode)
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory."""
        self.grad_checkpointing = enable

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised final tokens (B, prefix + prompts + patches, D)."""
        x = self.method.embed(self.backbone, images)
        for index, block in enumerate(self.backbone.blocks):
            x = self.method.before_block(x, index)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.backbone.norm(x)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> pooled pre-logit features (B, D)."""
        x = self.forward_tokens(images)
        x = pool_tokens(x, self.output, self.info.num_prefix_tokens, self.method.prompt_tokens)
        return self.method.after_pool(self.backbone.fc_norm(x), images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> logits (B, num_classes)."""
        return self.head(self.forward_features(images))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a task artifact stores: every trainable parameter plus the method's and head's buffers."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        names |= {f"method.{n}" for n, _ in self.method.named_buffers()}
        names |= {f"head.{n}" for n, _ in self.head.named_buffers()}  # e.g. the Mlp-k head's BatchNorm statistics
        return {k: v for k, v in self.state_dict().items() if k in names}

    def parameter_summary(self) -> dict[str, Any]:
        """Trainable/backbone parameter counts (the paper's accounting: head counted separately)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        head = sum(p.numel() for p in self.head.parameters())
        return {
            "trainable_params": trainable,
            "head_params": head,
            "method_params": trainable - head,
            "backbone_params": self.info.num_params,
            "trainable_percent": 100.0 * trainable / self.info.num_params,
        }


def build_model(
    model_name: str,
    method: MethodConfig | dict[str, Any],
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    img_size: int | None = None,
) -> AdaptedModel:
    """Create a timm backbone and wrap it with ``method`` and a fresh ``num_classes`` head.

    Example:
        >>> model = build_model("vit_base_patch16_224.orig_in21k", {"name": "vpt-deep", "prompt_length": 50}, 100)
    """
    vit = create_vit(model_name, pretrained=pretrained, weights=weights, img_size=img_size)
    info = describe(model_name, vit)
    digest = weights_hash(vit)
    return AdaptedModel(vit, info, build_method(method, info), num_classes, backbone_hash=digest)
