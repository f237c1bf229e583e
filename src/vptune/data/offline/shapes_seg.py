"""``shapes_seg``: a generated semantic-segmentation task (5 shape classes + background, per-pixel masks).

dSprites-style flat shapes (square, disk, triangle, cross, ring) of random colour, size, rotation and position,
2-4 per image and occluding each other in drawing order, on a two-colour value-noise background, plus pixel
noise. Colours carry no class information: the class of a pixel is the shape of the topmost object covering it
(0 = background). Images are 48x48 (evaluated at that size, trained on 32x32 crops); the mask is exact (no
anti-aliasing), so image and mask agree on every pixel. Deterministic: numpy float64 from a seeded generator.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

import numpy as np

from vptune.data.offline._draw import pixel_grid, random_colours, smooth_noise, to_uint8, two_colour
from vptune.data.sources import TaskData

NAME = "shapes_seg"
CLASSES: tuple[str, ...] = ("background", "square", "disk", "triangle", "cross", "ring")
IMAGE_SIZE = 48
SPLIT_SIZES: dict[str, int] = {"train": 800, "val": 200, "test": 300}
MAX_OBJECTS = 4


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(m, H, W) bool: inside shape ``kind`` (1..5) in its own frame (radius 1, v pointing up)."""
    name = CLASSES[kind]
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "disk":
        return u * u + v * v <= 1.0
    if name == "triangle":  # equilateral, vertices on the unit circle
        return (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    r2 = u * u + v * v  # ring
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def generate(n: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes: images uint8 (n, S, S, 3) and masks uint8 (n, S, S) with labels in [0, 6)."""
    yy, xx = pixel_grid(size)
    background = two_colour(smooth_noise(rng, n, size, 4), random_colours(rng, n), random_colours(rng, n))
    images, masks = background, np.zeros((n, size, size), dtype=np.uint8)
    counts = rng.integers(2, MAX_OBJECTS + 1, n)
    for k in range(MAX_OBJECTS):
        kinds = rng.integers(1, len(CLASSES), n)
        cx, cy = rng.uniform(0.12, 0.88, n), rng.uniform(0.12, 0.88, n)
        radius, theta = rng.uniform(0.15, 0.3, n), rng.uniform(0.0, 2 * np.pi, n)
        colours = random_colours(rng, n, sat=(0.3, 1.0), val=(0.3, 1.0))
        for i in np.flatnonzero(counts > k):
            dx, dy = (xx - cx[i]) / radius[i], (cy[i] - yy) / radius[i]  # (S, S), y up
            c, s = np.cos(theta[i]), np.sin(theta[i])
            inside = _inside(int(kinds[i]), c * dx + s * dy, -s * dx + c * dy)
            images[i][inside] = colours[i]
            masks[i][inside] = kinds[i]
    images = images + rng.normal(0.0, 0.03, images.shape)
    return to_uint8(images), masks


@functools.lru_cache(maxsize=4)
def load_shapes_seg(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The splits ``train`` (800), ``val`` (200), ``test`` (500) as read-only (images, masks) arrays."""
    rng = np.random.default_rng([zlib.crc32(NAME.encode()), seed])
    total = sum(SPLIT_SIZES.values())
    images, masks = generate(total, rng)
    out, start = {}, 0
    for split, count in SPLIT_SIZES.items():
        x, y = images[start : start + count].copy(), masks[start : start + count].copy()
        x.setflags(write=False)
        y.setflags(write=False)
        out[split] = (x, y)
        start += count
    return out


class MaskSamples(Sequence):
    """(image array, mask array) pairs over two aligned arrays, without copying them."""

    def __init__(self, images: np.ndarray, masks: np.ndarray) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return self.images[i], self.masks[i]


SEG_TASKS = {NAME: load_shapes_seg}
"""Offline segmentation tasks by name (``offline:NAME``)."""


def seg_task_data(name: str, seed: int = 0) -> TaskData:
    """``offline:shapes_seg`` as a segmentation :class:`~vptune.data.sources.TaskData` (evaluated at 48x48)."""
    splits = {split: MaskSamples(x, y) for split, (x, y) in SEG_TASKS[name](seed).items()}
    return TaskData(name=name, classes=list(CLASSES), splits=splits, task="segmentation", base_size=IMAGE_SIZE)
