"""Side-tuning (Zhang et al., 2020): a small side network on the images, blended with the frozen features."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..backbones import BackboneInfo
from .base import Method, MethodConfig, register_method


class SidetuneConfig(MethodConfig):
    """Side-tuning options: ``f = alpha * frozen + (1 - alpha) * side(images)``."""

    name: Literal["sidetune"] = "sidetune"
    side: Literal["convnet"] = Field("convnet", description="side network: convnet = 4 strided conv layers + pool")
    width: int = Field(32, ge=8, le=512, multiple_of=8, description="channels of the first conv (doubling per layer)")
    alpha: float = Field(0.5, gt=0.0, lt=1.0, description="initial blend weight of the frozen features")
    learn_alpha: bool = Field(True, description="learn alpha (through a sigmoid of a trainable logit)")


class SideConvNet(nn.Sequential):
    """Four 3x3 stride-2 convs (width w, 2w, 4w, 8w; GroupNorm + ReLU), global average pool, Linear to D.

    GroupNorm rather than BatchNorm: no running statistics, the same result for any batch size.

    Args:
        in_chans: Image channels.
        width: Channels of the first conv.
        dim: Output width (the backbone's embed dim D).
    """

    def __init__(self, in_chans: int, width: int, dim: int) -> None:
        layers: list[nn.Module] = []
        channels = in_chans
        for i in range(4):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(8, out), nn.ReLU()]
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, dim)]
        super().__init__(*layers)


@register_method
class Sidetune(Method):
    """Blend the frozen pooled features with a trainable side network's features (after pooling).

    ``alpha = sigmoid(alpha_logit)``; the logit starts at ``logit(config.alpha)`` and trains unless
    ``learn_alpha`` is false (then it is a stored buffer). The side network and the head train.
    """

    name = "sidetune"
    summary = "Sidetune: side ConvNet blended with the frozen features"
    default_optim = {"optimizer": "adamw", "lr": 1.6e-2, "weight_decay": 0.05}  # docs/default-optim.md (measured)
    config_cls = SidetuneConfig
    shares_backbone_pass = True  # acts after pooling only
    reads_images_after_pool = True
    config: SidetuneConfig

    def __init__(self, config: SidetuneConfig, info: BackboneInfo) -> None:
        super().__init__(config, info)
        self.side = SideConvNet(info.in_chans, config.width, info.embed_dim)
        logit = torch.tensor(math.log(config.alpha / (1.0 - config.alpha)))
        if config.learn_alpha:
            self.alpha_logit = nn.Parameter(logit)
        else:
            self.register_buffer("alpha_logit", logit)

    @property
    def alpha(self) -> torch.Tensor:
        """The current blend weight of the frozen features, in (0, 1)."""
        return torch.sigmoid(self.alpha_logit)

    def after_pool(self, features: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        if images is None:
            raise ValueError("sidetune reads the images after pooling: pass them to AdaptedModel.pool")
        side = self.side(images).to(features.dtype)
        alpha = self.alpha.to(features.dtype)
        return alpha * features + (1.0 - alpha) * side
