"""Full fine-tuning: every backbone weight trains (the artifact then holds the whole model)."""

from typing import Literal

from ..backbones import Backbone
from .base import Method, MethodConfig, register_method


class FullConfig(MethodConfig):
    name: Literal["full"] = "full"


@register_method
class Full(Method):
    name = "full"
    summary = "Full fine-tuning: all backbone weights and the head"
    default_optim = {"optimizer": "adamw", "lr": 4e-3, "weight_decay": 0.05}  # docs/default-optim.md
    config_cls = FullConfig
    trains_backbone = True

    def attach(self, backbone: Backbone) -> None:
        backbone.module.requires_grad_(True)
