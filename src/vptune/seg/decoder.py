"""SETR-PUP: progressive upsampling of the last layer's patch-token map to a per-pixel classifier.

SETR (Zheng et al. 2021), PUP variant, as VPT's segmentation experiments use it: the patch tokens (prefix and
prompt tokens dropped) form a (B, D, h, w) map; a LayerNorm over D, then ``num_convs`` stages of conv 3x3 +
BatchNorm + ReLU, the last log2(patch) of them followed by a 2x bilinear upsampling (four for 16x16 patches, as
in SETR), then a 1x1 classifier. A final bilinear resize makes the output exactly the input size for any patch
size (e.g. 14). Auxiliary heads (2 stages each, training only) read intermediate blocks, as in SETR.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class PUPDecoder(nn.Module):
    """(B, D, h, w) feature map -> (B, num_classes, H, W) logits.

    Args:
        in_dim: Token width D.
        num_classes: Output classes (background included).
        patch_size: The backbone's patch (stride) size; sets how many stages upsample 2x.
        channels: Width of the conv stages (SETR: 256).
        num_convs: Conv stages (SETR-PUP: 4; its auxiliary heads: 2).
    """

    def __init__(
        self, in_dim: int, num_classes: int, patch_size: tuple[int, int], channels: int = 256, num_convs: int = 4
    ) -> None:
        super().__init__()
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_dim if i == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for i in range(num_convs)
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        doublings = max(0, round(math.log2(max(self.patch_size))))
        self.upsample_from = num_convs - min(num_convs, doublings)  # stages from this index upsample 2x

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Feature map (B, D, h, w) -> logits (B, K, H, W); ``size`` = (H, W), default (h, w) x patch size."""
        h, w = x.shape[-2:]
        size = size or (h * self.patch_size[0], w * self.patch_size[1])
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LayerNorm over D: (B, h, w, D) -> (B, D, h, w)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= self.upsample_from:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.classifier(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x


class SegmentationHead(nn.Module):
    """The task's head: the PUP decoder on the last block, plus auxiliary PUP heads on ``aux_layers``.

    ``aux`` is a ModuleDict keyed by block index (as a string) so artifact keys name the block they read.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        patch_size: tuple[int, int],
        channels: int = 256,
        num_convs: int = 4,
        aux_layers: list[int] | tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.decode = PUPDecoder(in_dim, num_classes, patch_size, channels, num_convs)
        self.aux = nn.ModuleDict(
            {str(i): PUPDecoder(in_dim, num_classes, patch_size, channels, 2) for i in sorted(set(aux_layers))}
        )

    @property
    def aux_layers(self) -> list[int]:
        """Blocks read by the auxiliary heads, ascending."""
        return [int(k) for k in self.aux]

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The main decoder only (inference): (B, D, h, w) -> (B, K, H, W)."""
        return self.decode(x, size)
