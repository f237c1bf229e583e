"""Full fine-tuning: every backbone weight trains (the artifact then holds the whole model)."""

from typing import Literal

from pydantic import Field
from torch import nn

from ..backbones import Backbone
from .base import Method, MethodConfig, register_method


class FullConfig(MethodConfig):
    name: Literal["full"] = "full"
    dropout: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="dropout while fine-tuning: after the position embedding and inside every block's MLP "
        "(the official ViT's dropout_rate 0.1)",
    )


def set_vit_dropout(backbone: nn.Module, p: float) -> int:
    """Set the probability of a timm ViT's own Dropout modules: ``pos_drop`` and each block's ``mlp.drop1/2``.

    Returns how many Dropout modules were set (the official ViT applies ``dropout_rate`` at the same places).
    """
    found = [getattr(backbone, "pos_drop", None)]
    for block in getattr(backbone, "blocks", []):
        mlp = getattr(block, "mlp", None)
        found += [getattr(mlp, "drop1", None), getattr(mlp, "drop2", None)]
    drops = [m for m in found if isinstance(m, nn.Dropout)]
    for m in drops:
        m.p = p
    return len(drops)


@register_method
class Full(Method):
    name = "full"
    summary = "Full fine-tuning: all backbone weights and the head"
    default_optim = {"optimizer": "adamw", "lr": 4e-3, "weight_decay": 0.05}  # docs/default-optim.md
    config_cls = FullConfig
    trains_backbone = True

    def attach(self, backbone: Backbone) -> None:
        backbone.module.requires_grad_(True)
        set_vit_dropout(backbone.module, self.config.dropout)
