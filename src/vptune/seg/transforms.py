"""Joint image + mask transforms (torchvision v2: masks are ``tv_tensors.Mask``, resized nearest-neighbour).

Training (SETR / mmseg ADE20K recipe): resize the short side to ``crop x r``, r ~ U(scale_range), random crop
``crop`` (padding with black pixels / the ignore label when smaller), horizontal flip, photometric jitter
(images only), normalise. Evaluation: the image is only normalised; :mod:`vptune.seg.evaluate` rescales it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from .config import IGNORE_INDEX, TORCH_IGNORE

JointTransform = Callable[[Image.Image, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def to_tv(image: Image.Image, mask: np.ndarray) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """PIL RGB image + (H, W) uint8 mask -> (3, H, W) uint8 Image and (H, W) uint8 Mask."""
    img = tv_tensors.Image(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1))  # (H,W,3)->(3,H,W)
    return img, tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.uint8)))


def mask_to_labels(mask: torch.Tensor) -> torch.Tensor:
    """uint8 mask (ignore = 255) -> int64 label map with ignore = -100 (cross_entropy's default)."""
    labels = mask.as_subclass(torch.Tensor).long()
    return torch.where(labels == IGNORE_INDEX, torch.full_like(labels, TORCH_IGNORE), labels)


def joint_train_ops(
    crop: tuple[int, int], scale_range: tuple[float, float], photometric: bool, flip_p: float = 0.5
) -> v2.Compose:
    """The random geometric + photometric ops on (Image, Mask) pairs, before dtype conversion."""
    short = min(crop)
    lo, hi = max(1, round(short * scale_range[0])), max(1, round(short * scale_range[1]))
    ops: list[Any] = [
        v2.RandomResize(lo, hi + 1, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        v2.RandomHorizontalFlip(flip_p),
    ]
    if photometric:  # images only; ranges after mmseg's PhotoMetricDistortion (brightness multiplicative)
        ops.append(v2.ColorJitter(brightness=0.25, contrast=0.5, saturation=0.5, hue=0.05))
    return v2.Compose(ops)


def seg_train_transform(pre: dict[str, Any], scale_range: tuple[float, float], photometric: bool) -> JointTransform:
    """(PIL image, uint8 mask) -> normalised (3, h, w) float tensor and (h, w) int64 labels at the crop size."""
    crop = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    ops = joint_train_ops(crop, scale_range, photometric)
    finish = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])])

    def apply(image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = ops(*to_tv(image, mask))
        return finish(img).as_subclass(torch.Tensor), mask_to_labels(msk)

    return apply


def seg_eval_transform(pre: dict[str, Any]) -> JointTransform:
    """(PIL image, uint8 mask) -> normalised image and labels at the original size (rescaled in evaluation)."""
    finish = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])])

    def apply(image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img, msk = to_tv(image, mask)
        return finish(img).as_subclass(torch.Tensor), mask_to_labels(msk)

    return apply


def normalize_image(image: Image.Image, pre: dict[str, Any]) -> torch.Tensor:
    """A PIL image alone (prediction) -> normalised (3, H, W) float tensor at its own size."""
    img = tv_tensors.Image(torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1))
    out = v2.Normalize(pre["mean"], pre["std"])(v2.ToDtype(torch.float32, scale=True)(img))
    return out.as_subclass(torch.Tensor)
