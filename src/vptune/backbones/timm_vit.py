"""Load a timm Vision Transformer as a frozen backbone, through timm's public API only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .interface import BackboneInfo, wrap_backbone
from .vit import VIT_SEAMS

REQUIRED_SEAMS = VIT_SEAMS  # the attributes of timm's VisionTransformer the ViT family composes
RANDOM_INIT_SEED = 0
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")


def create_vit(
    name: str, *, pretrained: bool = True, weights: str | Path | None = None, img_size: int | None = None
) -> nn.Module:
    """Create a timm ViT-family model without classifier head.

    Args:
        name: Any timm model name (``vit_base_patch16_224.orig_in21k``, ``deit_small_patch16_224``, ...).
        pretrained: Load timm's pretrained weights (from the Hugging Face hub or timm's cache); without them
            the random init is seeded, so it is identical on every call.
        weights: A local ``.safetensors``/``.pth``/``.npz`` file to load instead, through timm's loaders.
        img_size: Input resolution; position embeddings are resampled by timm when it differs.

    Raises:
        ConfigError: Unknown model name or a model that is not a Vision Transformer.
        DataError: The weights file is missing or has an unknown format.
    """
    kwargs: dict[str, Any] = {"num_classes": 0}
    if img_size is not None:
        kwargs["img_size"] = img_size
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise DataError(f"weights file '{path}' does not exist: pass an existing file to --weights")
        if path.suffix not in WEIGHT_SUFFIXES:
            raise DataError(f"weights file '{path}' has an unknown format; use one of {', '.join(WEIGHT_SUFFIXES)}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path), "custom_load": path.suffix == ".npz"}
        pretrained = True
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0].split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ConfigError(f"model.name: '{name}' is not a timm model.{hint}")
    try:
        # random init is seeded so that a --no-pretrained backbone is the same on every load (hash matches)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (RuntimeError, KeyError) as err:
        raise DataError(f"could not load weights for '{name}': {err}") from err
    missing = [seam for seam in REQUIRED_SEAMS if not hasattr(model, seam)]
    if missing:
        raise ConfigError(
            f"model.name: '{name}' is not a Vision Transformer (lacks {', '.join(missing)}); "
            "vptune supports timm's VisionTransformer family (vit_*, deit_*, DINOv2, CLIP ViTs, ...)"
        )
    return model


def describe(name: str, vit: nn.Module) -> BackboneInfo:
    """Collect the facts a method needs from a backbone (through its family's :class:`Backbone`)."""
    return wrap_backbone(vit, name).info
