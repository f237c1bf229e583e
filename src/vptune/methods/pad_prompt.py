"""VPT for ConvNets (the paper's Table 5, official ``prompt_resnet``): a learnable border of p pixels.

The normalised S x S image is framed by p trainable pixels on every side, so the frozen ConvNet sees an
(S + 2p) x (S + 2p) input. The frame is initialised U(0, 1) in pixel space and then normalised with the
ImageNet mean and std, like an image. Trainable values: 3 * p * (S + 2p) * 2 (top, bottom) + 3 * S * p * 2
(left, right); 13,740 for p = 5 at 224.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method


class PadConfig(MethodConfig):
    """Pad-prompt options (the paper's grid: p in {1, 3, 5, 7, 9, 11})."""

    name: Literal["vpt-pad"] = "vpt-pad"
    prompt_length: int = Field(5, ge=0, le=512, description="p: width of the learnable border in pixels")

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        if info.input_size is None:
            raise ConfigError(f"method.name: 'vpt-pad' needs the input size of backbone '{info.name}'")


def normalised_uniform(shape: tuple[int, ...]) -> torch.Tensor:
    """U(0, 1) pixels (C, h, w) normalised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(-1, 1, 1)
    return (torch.rand(shape) - mean[: shape[0]]) / std[: shape[0]]


@register_method
class PadPrompt(Method):
    """A trainable frame around the input image; the whole ConvNet stays frozen."""

    name = "vpt-pad"
    summary = "VPT-pad: a learnable p-pixel border around the image (ConvNets, paper Table 5)"
    config_cls = PadConfig
    families = ("convnet",)
    config: PadConfig

    def __init__(self, config: PadConfig, info: BackboneInfo) -> None:
        super().__init__(config, info)
        p, (h, w), c = config.prompt_length, info.input_size, info.in_chans
        self.length = p
        self.size = (h, w)
        if p:
            self.top = nn.Parameter(normalised_uniform((c, p, w + 2 * p)))
            self.bottom = nn.Parameter(normalised_uniform((c, p, w + 2 * p)))
            self.left = nn.Parameter(normalised_uniform((c, h, p)))
            self.right = nn.Parameter(normalised_uniform((c, h, p)))

    def frame(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) -> framed images (B, C, S + 2p, S + 2p)."""
        if not self.length:
            return images
        b, _, h, w = images.shape
        if (h, w) != self.size:
            raise ValueError(f"vpt-pad was built for {self.size[0]}x{self.size[1]} images, got {h}x{w}")
        dtype = images.dtype
        middle = torch.cat(
            [self.left.to(dtype).expand(b, -1, -1, -1), images, self.right.to(dtype).expand(b, -1, -1, -1)], dim=3
        )
        top, bottom = self.top.to(dtype).expand(b, -1, -1, -1), self.bottom.to(dtype).expand(b, -1, -1, -1)
        return torch.cat([top, middle, bottom], dim=2)  # (B, C, p + S + p, S + 2p)

    def embed(self, backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        return backbone.embed(self.frame(images))
