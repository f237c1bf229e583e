"""Segmentation inference and evaluation: single-scale sliding window, and multi-scale + flip (mmseg's protocol).

An image is rescaled so its short side is ``base_size x scale`` (ADE20K: 512, the crop size), cut into crop-
sized windows with the given stride (overlaps averaged; images smaller than a window are padded), and the
logits are resized back to the image's original size. Multi-scale + flip averages the softmax probabilities of
every scale and both flips. Scores are read from a streaming confusion matrix (:class:`ConfusionMatrix`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from .metrics import ConfusionMatrix


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window offsets along one axis covering ``size`` (the last window ends at the border, mmseg's rule)."""
    if size <= crop:
        return [0]
    count = math.ceil((size - crop) / stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


@torch.no_grad()
def slide_logits(
    model: nn.Module,
    image: torch.Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    num_classes: int,
    batch_size: int = 16,
    autocast: Any = None,
) -> torch.Tensor:
    """Image (3, H, W) -> logits (K, H, W) averaged over overlapping crop-sized windows."""
    _, h, w = image.shape
    ph, pw = max(crop[0] - h, 0), max(crop[1] - w, 0)
    padded = F.pad(image, (0, pw, 0, ph)) if ph or pw else image  # (3, H', W'), zeros = the mean colour
    hh, ww = padded.shape[-2:]
    boxes = [(y, x) for y in window_starts(hh, crop[0], stride[0]) for x in window_starts(ww, crop[1], stride[1])]
    total = padded.new_zeros(num_classes, hh, ww)
    count = padded.new_zeros(1, hh, ww)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        windows = torch.stack([padded[:, y : y + crop[0], x : x + crop[1]] for y, x in chunk])  # (n, 3, ch, cw)
        if autocast is not None:
            with autocast():
                out = model(windows)
        else:
            out = model(windows)
        for (y, x), logits in zip(chunk, out.float()):
            total[:, y : y + crop[0], x : x + crop[1]] += logits
            count[:, y : y + crop[0], x : x + crop[1]] += 1
    return (total / count)[:, :h, :w]


@torch.no_grad()
def segment_image(
    model: nn.Module,
    image: torch.Tensor,
    crop: tuple[int, int],
    num_classes: int,
    *,
    base_size: int | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    stride: float = 2 / 3,
    batch_size: int = 16,
    autocast: Any = None,
) -> torch.Tensor:
    """Image (3, H, W) -> class scores (K, H, W) at its own size: logits (one scale, no flip) or mean softmax."""
    _, h, w = image.shape
    base = base_size or min(crop)
    steps = (max(1, round(crop[0] * stride)), max(1, round(crop[1] * stride)))
    single = len(scales) == 1 and not flip
    acc = image.new_zeros(num_classes, h, w)
    for scale in scales:
        ratio = base * scale / min(h, w)
        size = (max(1, round(h * ratio)), max(1, round(w * ratio)))
        scaled = image if size == (h, w) else F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            logits = slide_logits(model, x, crop, steps, num_classes, batch_size, autocast)  # (K, h', w')
            logits = logits.flip(-1) if flipped else logits
            if tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits[None], (h, w), mode="bilinear", align_corners=False)[0]
            acc += logits if single else logits.softmax(0)
    return acc


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset: Any,
    device: torch.device,
    crop: tuple[int, int],
    classes: list[str],
    *,
    base_size: int | None = None,
    mode: str = "slide",
    scales: Sequence[float] = (1.0,),
    stride: float = 2 / 3,
    autocast: Any = None,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of ``model`` over a :class:`~vptune.seg.data.SegDataset`.

    ``mode``: ``slide`` (scale 1, no flip) or ``multiscale`` (``scales`` and horizontal flip).
    """
    model.eval()
    matrix = ConfusionMatrix(len(classes))
    start, skipped, images = time.perf_counter(), 0, 0
    multi = mode == "multiscale"
    for i in tqdm(range(len(dataset)), desc=desc, leave=False, disable=(not progress) or None):
        item = dataset[i]
        if item is None:
            skipped += 1
            continue
        image, labels = item
        scores = segment_image(
            model,
            image.to(device),
            crop,
            len(classes),
            base_size=base_size,
            scales=tuple(scales) if multi else (1.0,),
            flip=multi,
            stride=stride,
            autocast=autocast,
        )
        matrix.update(scores.argmax(0), labels)
        images += 1
    out = matrix.summary(classes)
    out.update({"n": images, "skipped": skipped, "mode": mode, "seconds": time.perf_counter() - start})
    return out
