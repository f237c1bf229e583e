"""AdaptedModel: a frozen backbone, one adaptation method, and a head; vptune's one forward path.

Every consumer (training, the feature cache, the multi-task bank, class-prototype initialisation) runs the
backbone through :meth:`AdaptedModel.forward_blocks` or the :class:`~vptune.backbones.Backbone` it wraps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones import Backbone, BackboneInfo, create_vit, weights_hash, wrap_backbone
from .methods import Method, MethodConfig, build_method


def resolve_output(config: MethodConfig, backbone: Backbone) -> str:
    """`auto` asks the backbone family (ViT: the class token when timm pools by token, else mean of patches)."""
    return backbone.default_output() if config.output == "auto" else config.output


class AdaptedModel(nn.Module):
    """Frozen backbone + method + head. Only the method's choice of parameters requires gradients.

    Args:
        backbone: A timm model of a supported family created without a head (``num_classes=0``); kept as
            ``self.backbone`` (artifact keys start with ``backbone.``), run through ``self.arch``, its
            :class:`~vptune.backbones.Backbone` interface.
        info: Facts about the backbone (see :func:`vptune.backbones.describe`).
        method: The adaptation method (owns prompts/adapters; may unfreeze backbone parts).
        num_classes: Size of the fresh head.
        backbone_hash: Fingerprint of the backbone's pretrained weights, recorded in artifacts.
        task: ``classification`` (head on pooled features) or ``segmentation`` (SETR-PUP decoder on the dense
            map, :mod:`vptune.seg`; ``forward`` then returns (B, K, H, W) logits).
        decoder: Segmentation decoder options (``channels``, ``num_convs``, ``aux_layers``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        info: BackboneInfo,
        method: Method,
        num_classes: int,
        backbone_hash: str = "",
        task: str = "classification",
        decoder: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.arch = wrap_backbone(backbone, info.name)  # plain attribute: holds no parameters of its own
        self.info = info
        self.method = method
        self.num_classes = num_classes
        self.backbone_hash = backbone_hash or weights_hash(backbone)
        self.output = resolve_output(method.config, self.arch)
        self.grad_checkpointing = False
        backbone.requires_grad_(False)
        method.attach(self.arch)
        self.task, self.decoder = task, dict(decoder or {})
        if task == "segmentation":
            from .seg.model import build_seg_head

            self.head = build_seg_head(method, info, num_classes, self.decoder)
        else:
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

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> features entering block 0, with the method's input-side edits."""
        return self.method.embed(self.arch, images)

    def forward_blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run blocks ``start``..``stop - 1`` with the method's per-block edits (the one block loop)."""
        return self.arch.run_blocks(
            x,
            start,
            stop,
            before_block=self.method.before_block,
            checkpointing=self.grad_checkpointing and torch.is_grad_enabled(),
        )

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> final features, e.g. normalised tokens (B, prefix + prompts + patches, D)."""
        return self.arch.finish(self.forward_blocks(self.embed(images)))

    def pool(self, x: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        """Final features -> pooled pre-logit features (B, D); ``images`` only for methods that read them."""
        features = self.arch.pool(x, self.output, self.method.prompt_tokens)
        return self.method.after_pool(features, images)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> pooled pre-logit features (B, D)."""
        return self.pool(self.forward_tokens(images), images)

    def forward_dense(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the dense feature map (B, D, h, w) for a dense head (prompt tokens dropped)."""
        return self.arch.dense(self.forward_tokens(images), self.method.prompt_tokens)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) -> logits (B, num_classes)."""
        return self.head(features)

    def forward(self, images: torch.Tensor) -> Any:
        """Images -> logits (B, num_classes); segmentation: (B, K, H, W) (:func:`vptune.seg.model.segment`)."""
        if self.task == "segmentation":
            from .seg.model import segment

            return segment(self, images)
        return self.forward_head(self.forward_features(images))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a task artifact stores: trainable parameters, the method's buffers and the buffers of
        backbone modules with trainable parameters (BatchNorm statistics under full / partial / bias)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        names |= {f"method.{n}" for n, _ in self.method.named_buffers()}
        for prefix, module in self.named_modules():  # statistics of trained modules (BatchNorm running stats)
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                names |= {f"{prefix}.{n}" for n, _ in module.named_buffers(recurse=False)}
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
    task: str = "classification",
    decoder: dict[str, Any] | None = None,
) -> AdaptedModel:
    """Create a timm backbone and wrap it with ``method`` and a fresh ``num_classes`` head.

    Example:
        >>> model = build_model("vit_base_patch16_224.orig_in21k", {"name": "vpt-deep", "prompt_length": 50}, 100)
    """
    vit = create_vit(model_name, pretrained=pretrained, weights=weights, img_size=img_size)
    info = wrap_backbone(vit, model_name).info
    digest = weights_hash(vit)
    method_obj = build_method(method, info)
    return AdaptedModel(vit, info, method_obj, num_classes, backbone_hash=digest, task=task, decoder=decoder)
