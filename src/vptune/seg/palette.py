"""Colour palette for label maps (index -> RGB), and label maps as PNG images."""

from __future__ import annotations

import numpy as np
from PIL import Image


def palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours: the PASCAL VOC bit-interleaving scheme (class 0 black), distinct for 256."""
    out = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for i in range(num_classes):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        out[i] = (r, g, b)
    return out


def colourise(labels: np.ndarray, num_classes: int) -> Image.Image:
    """(H, W) integer label map -> RGB image (ignore / out-of-range labels white)."""
    colours = np.concatenate([palette(num_classes), np.full((1, 3), 255, dtype=np.uint8)])
    idx = np.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    return Image.fromarray(colours[idx])


def label_image(labels: np.ndarray) -> Image.Image:
    """(H, W) label map -> mode ``L`` PNG-ready image (labels must fit in 0-255)."""
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label values must lie in 0-255 to be written as an 8-bit PNG")
    return Image.fromarray(labels.astype(np.uint8), mode="L")
