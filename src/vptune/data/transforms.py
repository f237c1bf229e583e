"""Preprocessing from the backbone's timm data config (or ImageNet statistics, the paper's setting)."""

from __future__ import annotations

from typing import Any

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torchvision import transforms as T

from ..errors import ConfigError

INTERPOLATION = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}
FGVC_RESIZE_RATIO = 256 / 224  # resize 256 then crop 224, scaled to other resolutions


def preprocessing_config(
    backbone: nn.Module, normalize: str = "model", augment: str = "none", interpolation: str = "model"
) -> dict[str, Any]:
    """The JSON-ready preprocessing recorded in artifacts: size, mean/std, interpolation, augmentation.

    ``interpolation``: ``model`` (the timm data config's, bicubic for most ViTs) or an explicit ``bilinear`` /
    ``bicubic`` (VTAB-1k's TensorFlow pipeline resizes bilinearly).
    """
    cfg = timm.data.resolve_model_data_config(backbone)
    mean, std = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD) if normalize == "imagenet" else (cfg["mean"], cfg["std"])
    # the model's own patch-embedding size wins: it reflects an img_size override, the data config may not
    size = getattr(getattr(backbone, "patch_embed", None), "img_size", None) or cfg["input_size"][-2:]
    return {
        "input_size": [int(size[0]), int(size[1])],
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "interpolation": interpolation
        if interpolation in INTERPOLATION
        else cfg.get("interpolation", "bicubic")
        if cfg.get("interpolation") in INTERPOLATION
        else "bicubic",
        "augment": augment,
    }


def build_transform(pre: dict[str, Any], train: bool, auto_augment: str | None = None, reprob: float = 0.0) -> Any:
    """PIL RGB image -> normalised (3, H, W) tensor. ``none``: plain resize; ``flip-crop``: FGVC recipe;
    ``timm``: for training, ``timm.data.create_transform``'s pipeline with ``auto_augment`` (e.g. RandAugment
    ``rand-m9-mstd0.5-inc1``) and random erasing ``reprob``; for evaluation a plain resize."""
    size = tuple(pre["input_size"])
    interp = INTERPOLATION[pre["interpolation"]]
    if pre["augment"] == "timm" and train:
        from timm.data import create_transform

        try:
            return create_transform(
                (3, *size),
                is_training=True,
                auto_augment=auto_augment,
                re_prob=reprob,
                interpolation=pre["interpolation"],
                mean=tuple(pre["mean"]),
                std=tuple(pre["std"]),
            )
        except (AssertionError, KeyError, ValueError) as err:
            raise ConfigError(
                f"data.auto_augment: '{auto_augment}' is not a timm policy ({err!r}); e.g. rand-m9-mstd0.5-inc1 "
                "(RandAugment), augmix-m5-w3, v0 or original (AutoAugment)"
            ) from None
    if pre["augment"] == "flip-crop":
        resize = round(min(size) * FGVC_RESIZE_RATIO)
        ops = [T.Resize(resize, interpolation=interp)]
        ops += [T.RandomCrop(size), T.RandomHorizontalFlip()] if train else [T.CenterCrop(size)]
    else:
        ops = [T.Resize(size, interpolation=interp)]
    return T.Compose([*ops, T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
