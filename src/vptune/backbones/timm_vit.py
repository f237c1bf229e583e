"""Load a timm Vision Transformer as a frozen backbone, through timm's public API only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .hub import local_pretrained_file
from .interface import FAMILIES, BackboneInfo, wrap_backbone
from .mae import is_mae, use_mae_output
from .weights import WEIGHT_SUFFIXES, apply_weights, check_weights_path  # noqa: F401

RANDOM_INIT_SEED = 0
SUPPORTED = "timm ViTs (vit_*, deit_*, DINOv2, CLIP, MAE), Swin (swin_*), ResNets (resnet*) and ConvNeXts (convnext_*)"


def create_vit(
    name: str, *, pretrained: bool = True, weights: str | Path | None = None, img_size: int | None = None
) -> nn.Module:
    """Create a timm model of a supported backbone family without classifier head.

    Args:
        name: A timm model name (``vit_base_patch16_224.orig_in21k``, ``swin_base_patch4_window7_224``,
            ``convnext_base.fb_in22k``, ``resnet50``, ...). ``.mae`` ViTs get MAE's output (see backbones/mae.py).
        pretrained: Load timm's pretrained weights (from the Hugging Face hub or timm's cache); without them
            the random init is seeded, so it is identical on every call.
        weights: A local ``.safetensors``/``.pth``/``.pt``/``.bin``/``.npz`` file, or a MoCo-v3 ``.pth.tar``, to
            load instead, read without unpickling (:mod:`vptune.backbones.weights`, backbones/moco.py) and applied
            with an exact key check.
        img_size: Input resolution; position embeddings are resampled by timm when it differs.

    Raises:
        ConfigError: Unknown model name or a model of no supported family.
        DataError: The weights file is missing or has an unknown format.
    """
    kwargs: dict[str, Any] = {"num_classes": 0}
    if img_size is not None:
        kwargs["img_size"] = img_size
    if weights is not None:  # read by vptune itself, never unpickled: backbones/weights.py
        weights, pretrained = check_weights_path(weights), False
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0].split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ConfigError(f"model.name: '{name}' is not a timm model.{hint}")
    if pretrained and weights is None and (cached := local_pretrained_file(name)):  # fails fast when offline
        kwargs["pretrained_cfg_overlay"] = {"file": cached, "custom_load": cached.endswith(".npz")}
    try:
        # random init is seeded so that a --no-pretrained backbone is the same on every load (hash matches)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model.img_size: '{name}' takes no input-size argument ({err}); remove img_size") from err
    except (RuntimeError, KeyError) as err:
        raise DataError(f"could not load weights for '{name}': {err}") from err
    if not any(family.accepts(model) for family in FAMILIES):
        raise ConfigError(
            f"model.name: '{name}' ({type(model).__name__}) is not supported; vptune supports {SUPPORTED}"
        )
    if weights is not None:
        apply_weights(model, weights)
    if is_mae(model):
        use_mae_output(model)
    return model


def describe(name: str, vit: nn.Module) -> BackboneInfo:
    """Collect the facts a method needs from a backbone (through its family's :class:`Backbone`)."""
    return wrap_backbone(vit, name).info
