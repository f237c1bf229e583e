"""LoRA (Hu et al., 2022): low-rank updates ``(alpha / r) * B A`` beside frozen Linear layers of every block."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method
from .structure import mark_trainable

Target = Literal["qkv", "proj", "fc1", "fc2"]
# target -> (child of the block, Linear inside it), timm's public Block/Attention/Mlp attributes
TARGET_PATHS: dict[str, tuple[str, str]] = {
    "qkv": ("attn", "qkv"),
    "proj": ("attn", "proj"),
    "fc1": ("mlp", "fc1"),
    "fc2": ("mlp", "fc2"),
}


class LoraConfig(MethodConfig):
    """LoRA options; defaults: rank 8 on the fused qkv projection, scale alpha / rank = 1."""

    name: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1, description="rank r of the update B A")
    alpha: float | None = Field(None, gt=0, description="scaling numerator: the update is (alpha / r) B A; default r")
    targets: list[Target] = Field(["qkv"], description="Linear layers adapted in every block: qkv, proj, fc1, fc2")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA branch input")

    @field_validator("targets")
    @classmethod
    def _targets_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("choose at least one of qkv, proj, fc1, fc2")
        if len(set(value)) != len(value):
            raise ValueError("targets listed more than once")
        return value

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        if self.rank > info.embed_dim:
            raise ConfigError(f"method.rank: {self.rank} exceeds the embed dim {info.embed_dim}; use a low rank")


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(dropout(x)))`` around a frozen ``nn.Linear`` kept as ``base``.

    ``A`` is kaiming-uniform initialised and ``B`` zero, so the layer equals ``base`` at initialisation.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        ref = base.weight
        self.lora_dropout = nn.Dropout(dropout)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=ref.device, dtype=ref.dtype)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=ref.device, dtype=ref.dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_B(self.lora_A(self.lora_dropout(x)))

    def merged(self) -> nn.Linear:
        """The base layer with ``scale * B A`` folded into its weight (modified in place and returned)."""
        with torch.no_grad():
            delta = self.lora_B.weight.float() @ self.lora_A.weight.float()
            self.base.weight.add_((self.scale * delta).to(self.base.weight.dtype))
        return self.base


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every :class:`LoRALinear` of ``model`` into its base weight and unwrap it, for inference.

    The model is changed in place (its backbone weights now include the updates; copy it first to keep the
    original) and returned; its outputs are unchanged and no LoRA module is left. A merged model is no longer
    a LoRA task: save the unmerged model as the task artifact.
    """
    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, module in wrapped:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, module.merged())
    return model


@register_method
class Lora(Method):
    """Wrap the targeted Linear layers of every block with :class:`LoRALinear` (identity at initialisation).

    Only ``A`` and ``B`` (and the head) train and are stored in the task artifact; the LoRA modules are
    flagged trainable so their dropout follows ``train()`` while the backbone stays in eval mode.
    """

    name = "lora"
    families = ("vit",)  # wraps modules inside ViT blocks
    summary = "LoRA: low-rank updates on the blocks' Linear layers"
    default_optim = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0}  # docs/default-optim.md (measured)
    config_cls = LoraConfig
    config: LoraConfig

    def attach(self, backbone: Backbone) -> None:
        cfg = self.config
        for index, block in enumerate(backbone.iter_blocks()):
            for target in cfg.targets:
                child, attr = TARGET_PATHS[target]
                parent = getattr(block, child, None)
                layer = getattr(parent, attr, None)
                if isinstance(layer, LoRALinear):
                    raise ConfigError(
                        f"method.targets: block {index} {child}.{attr} has LoRA already (attached twice?)"
                    )
                if not isinstance(layer, nn.Linear):
                    raise ConfigError(
                        f"method.targets: '{target}' is not an nn.Linear ({child}.{attr}) in block {index} of "
                        f"'{self.info.name}'; choose among the block's Linear layers"
                    )
                lora = LoRALinear(layer, cfg.rank, cfg.alpha, cfg.dropout)
                for sub in (lora.lora_dropout, lora.lora_A, lora.lora_B):
                    mark_trainable(sub)
                setattr(parent, attr, lora)
