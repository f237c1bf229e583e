"""Segmentation answers of the HTTP service: label maps as PNG (raw class indices, or colour-coded)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from .palette import colourise, label_image


def png_bytes(image: Image.Image) -> bytes:
    """Encode a PIL image as PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def seg_result(task: str, filename: str | None, scores: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """One image's answer: ``mask_png`` is a base64 PNG (mode L) of class indices at the model's input size."""
    labels = scores.argmax(0).numpy() if scores.ndim == 3 else scores.numpy()  # (K, H, W) logits or (H, W)
    return {
        "task": task,
        "file": filename,
        "size": [int(labels.shape[0]), int(labels.shape[1])],
        "classes": classes,
        "mask_png": base64.b64encode(png_bytes(label_image(labels))).decode("ascii"),
    }


def mask_png(encoded: str, num_classes: int, colour: bool) -> bytes:
    """The PNG of a :func:`seg_result` (its base64 ``mask_png``), colour-coded when asked."""
    raw = base64.b64decode(encoded)
    if not colour:
        return raw
    with Image.open(io.BytesIO(raw)) as img:
        return png_bytes(colourise(np.array(img), num_classes))
