"""``digits``: scikit-learn's bundled UCI handwritten digits, upscaled to RGB with a random colour tint."""

from __future__ import annotations

import functools

import numpy as np

from vptune.data.offline._draw import random_colours, resize_bilinear, to_uint8, two_colour

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
POOL_SIZE = 1797  # images in sklearn.datasets.load_digits


@functools.lru_cache(maxsize=1)
def _source() -> tuple[np.ndarray, np.ndarray]:
    """Loads the bundled UCI digits once: images (1797, 8, 8) float64 in [0, 1], labels (1797,) int64."""
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0  # pixel values are 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def generate(n: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``n`` distinct digits (a seeded permutation of the 1797) and renders them as tinted RGB.

    Each image gets a random bright foreground colour on a random dark background colour; the ink intensity
    is the bilinearly upscaled 8x8 digit. Because the source is finite, ``n`` may not exceed 1797, and the
    first ``k`` images of a call never repeat among the remaining ones (so splits taken by slicing are
    disjoint).

    Args:
        n: Number of images, at most 1797.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,).

    Raises:
        ValueError: If ``n`` exceeds the size of the source.
    """
    if not 0 <= n <= POOL_SIZE:
        raise ValueError(f"digits has only {POOL_SIZE} source images; asked for {n}")
    images, labels = _source()
    idx = rng.permutation(POOL_SIZE)[:n]
    ink = resize_bilinear(images[idx], image_size)  # (n, S, S) in [0, 1]
    fg = random_colours(rng, n, sat=(0.3, 1.0), val=(0.7, 1.0))  # (n, 3)
    bg = random_colours(rng, n, sat=(0.0, 1.0), val=(0.0, 0.3))  # (n, 3)
    rgb = two_colour(ink, bg, fg)  # (n, S, S, 3)
    return to_uint8(rgb), labels[idx].copy()
