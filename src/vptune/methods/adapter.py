"""Adapters (Houlsby et al., 2019; Pfeiffer placement): a bottleneck MLP after each block's FFN."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import HeadInit, Method, MethodConfig, register_method, small_head_init
from .structure import mark_trainable


class AdapterConfig(MethodConfig):
    """Adapter options; the paper searches the reduction factor in {8, 64, 256}."""

    name: Literal["adapter"] = "adapter"
    head_init: HeadInit = small_head_init()
    reduction: int = Field(8, ge=1, description="reduction factor r: bottleneck width D / r (paper: 8, 64, 256)")
    placement: Literal["mlp"] = Field("mlp", description="where the adapter sits: mlp = after each block's FFN")
    activation: Literal["relu", "gelu"] = Field(
        "gelu", description="non-linearity inside the bottleneck (GELU as the official adapter_block.py)"
    )

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        d, r = info.embed_dim, self.reduction
        if r > d or d % r:
            raise ConfigError(
                f"method.reduction: {r} must divide the embed dim {d} and be at most {d} (bottleneck width D / r)"
            )


class Bottleneck(nn.Module):
    """``up(act(down(y)))`` with ``up`` zero-initialised (weight and bias), ``down`` xavier-uniform.

    Only the up-projection starts at zero: its gradient is non-zero at the first step, and once it has moved
    the down-projection receives gradient too (zero-initialising both would leave only ``up.bias`` learning).
    """

    def __init__(self, dim: int, hidden: int, activation: str = "gelu") -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(y)))


class AdapterMlp(nn.Module):
    """Wraps a block's frozen ``mlp`` (kept as ``base``): returns ``y + adapter(y)`` with ``y = base(x)``."""

    def __init__(self, base: nn.Module, adapter: Bottleneck) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y + self.adapter(y)


@register_method
class Adapter(Method):
    """Insert a residual bottleneck adapter after the FFN of every block (identity at initialisation).

    The adapters live inside the backbone (``blocks.i.mlp.adapter``) and are flagged trainable, so they follow
    ``train()`` while the wrapped FFN stays frozen and in eval mode.
    """

    name = "adapter"
    families = ("vit",)  # wraps modules inside ViT blocks
    summary = "Adapter: residual bottleneck MLP after each block's FFN"
    default_optim = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0}  # docs/default-optim.md (measured)
    config_cls = AdapterConfig
    config: AdapterConfig

    def attach(self, backbone: Backbone) -> None:
        dim = self.info.embed_dim
        hidden = dim // self.config.reduction
        for index, block in enumerate(backbone.iter_blocks()):
            mlp = getattr(block, "mlp", None)
            if not isinstance(mlp, nn.Module):
                raise ConfigError(f"method.placement: block {index} of '{self.info.name}' has no 'mlp' to adapt")
            if isinstance(mlp, AdapterMlp):
                raise ConfigError(f"method.name: block {index} already carries an adapter (attached twice?)")
            ref = next(block.parameters())
            adapter = Bottleneck(dim, hidden, self.config.activation).to(device=ref.device, dtype=ref.dtype)
            for sub in adapter.modules():
                mark_trainable(sub)
            setattr(block, "mlp", AdapterMlp(mlp, adapter))  # noqa: B010  (replace the attribute on its parent)
