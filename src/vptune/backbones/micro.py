"""``vptune_micro_vit``: a small ViT for 32x32 images, pretrained offline on generated fractals.

Registered with timm through its public ``register_model`` seam, so ``timm.create_model("vptune_micro_vit",
pretrained=True)`` (and ``--model vptune_micro_vit`` on the CLI) loads the weights bundled with vptune; nothing
is downloaded. How the weights were made: ``src/vptune/assets/MODEL_CARD.md`` (``vptune pretrain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MICRO_WEIGHTS = ASSETS / "vptune_micro_vit_fractal.safetensors"
MODEL_CARD = ASSETS / "MODEL_CARD.md"

# Architecture: 32x32 input, 4x4 patches (64 patch tokens + CLS), width 192, 6 blocks, 3 heads.
MICRO_ARGS: dict[str, Any] = {"img_size": 32, "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3}

# The pretrained cfg every bundled micro backbone shares (32x32 input, ImageNet normalisation, no classes).
MICRO_CFG: dict[str, Any] = {
    "num_classes": 0,
    "input_size": (3, 32, 32),
    "pool_size": None,
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "mean": IMAGENET_DEFAULT_MEAN,
    "std": IMAGENET_DEFAULT_STD,
    "classifier": "head",
    "license": "apache-2.0",
}

default_cfgs = generate_default_cfgs(
    {"vptune_micro_vit.fractal": {"file": str(MICRO_WEIGHTS), **MICRO_CFG, "first_conv": "patch_embed.proj"}}
)


@register_model
def vptune_micro_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-micro/4 (2.7M parameters); pretrained weights come from the vptune package, offline."""
    args = {**MICRO_ARGS, **kwargs}
    return build_model_with_cfg(
        VisionTransformer, "vptune_micro_vit", pretrained, pretrained_filter_fn=checkpoint_filter_fn, **args
    )
