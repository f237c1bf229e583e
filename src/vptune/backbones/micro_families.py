"""Micro Swin, ConvNeXt and ResNet architectures for 32x32 images, registered with timm.

They make every backbone family testable offline in seconds (``--model vptune_micro_swin --no-pretrained``).
The Swin and the ConvNeXt ship with weights pre-trained by ``vptune pretrain`` on the same generated fractals
as ``vptune_micro_vit`` (tags ``vptune_micro_swin.fractal`` and ``vptune_micro_convnext.fractal``, the
default tags, loaded from the package, offline; recipe and transfer check in
``assets/<model>/MODEL_CARD.md``). The ResNet is random init only (tag ``.untrained``): ``pretrained=True``
fails with a clear error.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, ResNet
from timm.models.swin_transformer import SwinTransformer

from .micro import ASSETS, MICRO_CFG


def bundled_weights(model: str) -> str:
    """Path of a micro backbone's bundled fractal weights: ``assets/<model>/<model>_fractal.safetensors``."""
    return str(ASSETS / model / f"{model}_fractal.safetensors")


# Swin: 32x32 in 2x2 patches (16x16 grid), windows of 4 (shifted in stages 1-3), widths 24-48-96-192.
MICRO_SWIN_ARGS: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 2,
    "window_size": 4,
    "embed_dim": 24,
    "depths": (2, 2, 2, 2),
    "num_heads": (1, 2, 2, 4),
}
MICRO_CONVNEXT_ARGS: dict[str, Any] = {"depths": (1, 1, 2, 1), "dims": (16, 32, 64, 128)}
MICRO_RESNET_ARGS: dict[str, Any] = {
    "block": BasicBlock,
    "layers": (1, 1, 1, 1),
    "channels": (16, 32, 64, 128),
    "stem_width": 16,
}


default_cfgs = generate_default_cfgs(
    {
        "vptune_micro_swin.fractal": {
            "file": bundled_weights("vptune_micro_swin"),
            **MICRO_CFG,
            "first_conv": "patch_embed.proj",
            "classifier": "head.fc",
        },
        "vptune_micro_convnext.fractal": {
            "file": bundled_weights("vptune_micro_convnext"),
            **MICRO_CFG,
            "first_conv": "stem.0",
            "classifier": "head.fc",
        },
        "vptune_micro_resnet.untrained": {**MICRO_CFG, "first_conv": "conv1", "classifier": "fc"},
    }
)


@register_model
def vptune_micro_swin(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin-micro (4 stages, 8 blocks, 32x32 input); pretrained: the bundled fractal weights (offline)."""
    return build_model_with_cfg(SwinTransformer, "vptune_micro_swin", pretrained, **{**MICRO_SWIN_ARGS, **kwargs})


@register_model
def vptune_micro_convnext(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    """ConvNeXt-micro (4 stages, 5 blocks, widths 16-128); pretrained: the bundled fractal weights (offline)."""
    return build_model_with_cfg(ConvNeXt, "vptune_micro_convnext", pretrained, **{**MICRO_CONVNEXT_ARGS, **kwargs})


@register_model
def vptune_micro_resnet(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-micro (4 stages of one basic block, widths 16-128); random init only."""
    return build_model_with_cfg(ResNet, "vptune_micro_resnet", pretrained, **{**MICRO_RESNET_ARGS, **kwargs})
