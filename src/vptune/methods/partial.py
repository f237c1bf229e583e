"""Partial-k fine-tuning: the last k Transformer blocks and the final norm train, the rest stays frozen."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method
from .structure import mark_trainable


class PartialConfig(MethodConfig):
    """Partial-k options (the paper's Table 1 reports Partial-1)."""

    name: Literal["partial"] = "partial"
    k: int = Field(1, ge=1, description="number of final Transformer blocks to fine-tune (1..depth)")

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        if self.k > info.depth:
            raise ConfigError(f"method.k: {self.k} is more than the backbone's depth {info.depth}; use 1..{info.depth}")


@register_method
class Partial(Method):
    """Fine-tune the last ``k`` blocks and the final norm.

    The trained modules (and all their submodules) are flagged with :func:`mark_trainable`, so they follow
    ``train()`` (dropout, drop-path) while the frozen part of the backbone stays in eval mode; the class keeps
    ``trains_backbone = False`` for that reason.
    """

    name = "partial"
    summary = "Partial-k: last k blocks + final norm fine-tuned"
    default_optim = {"optimizer": "adamw", "lr": 1.6e-2, "weight_decay": 0.05}  # docs/default-optim.md (measured)
    config_cls = PartialConfig
    config: PartialConfig

    def frozen_prefix_blocks(self) -> int:
        """The first depth - k blocks are frozen: their output is cached per image (no augmentation)."""
        return self.info.depth - self.config.k

    def attach(self, backbone: Backbone) -> None:
        first = backbone.depth - self.config.k
        modules = [backbone.block(i) for i in range(first, backbone.depth)]
        # a downsampling between two trained blocks trains too (Swin partial-4: stage 3's last blocks + merging)
        modules += [t for i in range(first + 1, backbone.depth) if (t := backbone.transition(i)) is not None]
        for module in [*modules, *backbone.final_norms()]:
            module.requires_grad_(True)
            for sub in module.modules():
                mark_trainable(sub)
