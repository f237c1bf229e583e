"""BitFit (Ben Zaken et al., 2022): every bias term of the backbone trains, all weights stay frozen."""

from __future__ import annotations

from typing import Literal

from ..backbones import Backbone
from ..errors import ConfigError
from .base import HeadInit, Method, MethodConfig, register_method, small_head_init
from .structure import unfreeze_biases


class BiasConfig(MethodConfig):
    """BitFit has no options beyond the shared ones (its head starts small by default)."""

    name: Literal["bias"] = "bias"
    head_init: HeadInit = small_head_init()


@register_method
class Bias(Method):
    """Train the ``bias`` of every backbone module (Linear, Conv, LayerNorm) plus the head.

    Biases are found by module structure (:func:`vptune.methods.structure.bias_parameters`). The backbone
    stays in eval mode (the frozen modules hold no dropout state worth training).
    """

    name = "bias"
    summary = "Bias (BitFit): all backbone bias terms + head"
    default_optim = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0}  # docs/default-optim.md (measured)
    config_cls = BiasConfig

    def attach(self, backbone: Backbone) -> None:
        if unfreeze_biases(backbone.module) == 0:
            raise ConfigError(f"method.name: backbone '{self.info.name}' has no bias parameters to tune")
