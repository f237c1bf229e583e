"""``dsprites_location`` / ``dsprites_orientation``: procedural sprites after dSprites (Matthey et al. 2017).

Latent factors follow the published dSprites definition: shape in {square, ellipse, heart}, 6 scales
linearly spaced in [0.5, 1], 40 orientations linearly spaced in [0, 2 pi] (both ends included, as in the
original), and x / y positions on 32 values in [0, 1]. Each factor is sampled uniformly and independently.
Sprites are drawn white on black as a binary 64x64 mask (the original resolution), then box-downsampled to
the output size. Labels are binned into 16 classes exactly as VTAB-1k does:
``label = floor(factor_index / (num_values / 16))``.
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import chunks, downsample, grey_to_rgb, pixel_grid, to_uint8

SHAPES: tuple[str, ...] = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
NUM_CLASSES = 16
Batch = tuple[np.ndarray, np.ndarray]  # images uint8 (n, S, S, 3), labels int64 (n,)
RENDER_SIZE = 64  # original dSprites resolution
_HALF = 0.15  # half side of the square at scale 1, canvas units
_MARGIN = 0.18  # position 0 / 1 maps to canvas 0.18 / 0.82, so the sprite stays (mostly) inside
LOCATION_CLASSES: tuple[str, ...] = tuple(f"x_bin_{i:02d}" for i in range(NUM_CLASSES))
ORIENTATION_CLASSES: tuple[str, ...] = tuple(f"orientation_bin_{i:02d}" for i in range(NUM_CLASSES))


def _sample_latents(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draws latent factor indices uniformly: shape, scale, orientation, pos_x, pos_y, each (n,) int64."""
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "scale": rng.integers(0, len(SCALES), n),
        "orientation": rng.integers(0, len(ORIENTATIONS), n),
        "pos_x": rng.integers(0, len(POSITIONS), n),
        "pos_y": rng.integers(0, len(POSITIONS), n),
    }


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Binary mask of one shape in its own frame, where the square occupies [-1, 1]^2.

    Args:
        shape: Index into SHAPES.
        u: (m, H, W) horizontal coordinate in sprite units.
        v: (m, H, W) vertical coordinate in sprite units (positive = down on screen).

    Returns:
        (m, H, W) bool mask.
    """
    if SHAPES[shape] == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if SHAPES[shape] == "ellipse":
        return (u / 1.25) ** 2 + (v / 0.6) ** 2 <= 1.0  # elongated, area close to the square's
    # heart: implicit curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 with y pointing up, lobes on top
    x, y = u * 1.05, -v * 1.05 + 0.15
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


def render(latents: dict[str, np.ndarray], image_size: int = 32) -> np.ndarray:
    """Renders sprites from latent factor indices.

    Args:
        latents: Output of the sampler: factor indices, each (n,).
        image_size: Output side length; must divide RENDER_SIZE (or be larger than it and a multiple).

    Returns:
        uint8 (n, S, S, 3) white sprites on black.
    """
    n = latents["shape"].shape[0]
    size = max(RENDER_SIZE, image_size)
    factor = size // image_size
    yy, xx = pixel_grid(size)
    cx = _MARGIN + (1 - 2 * _MARGIN) * POSITIONS[latents["pos_x"]]  # (n,) canvas units
    cy = _MARGIN + (1 - 2 * _MARGIN) * POSITIONS[latents["pos_y"]]
    half = _HALF * SCALES[latents["scale"]]
    theta = ORIENTATIONS[latents["orientation"]]
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for sl in chunks(n):
        dx = (xx[None] - cx[sl, None, None]) / half[sl, None, None]  # (m, size, size) sprite units
        dy = (yy[None] - cy[sl, None, None]) / half[sl, None, None]
        c, s = np.cos(theta[sl])[:, None, None], np.sin(theta[sl])[:, None, None]
        u, v = c * dx + s * dy, -s * dx + c * dy  # rotate the sprite by theta
        mask = np.zeros(dx.shape, dtype=bool)
        shapes = latents["shape"][sl]
        for k in range(len(SHAPES)):
            idx = np.flatnonzero(shapes == k)
            if idx.size:
                mask[idx] = _inside(k, u[idx], v[idx])
        grey = downsample(mask.astype(np.float64), factor)  # (m, S, S)
        out[sl] = to_uint8(grey_to_rgb(grey))
    return out


def _generate(n: int, rng: np.random.Generator, factor: str, num_values: int, image_size: int) -> Batch:
    latents = _sample_latents(n, rng)
    labels = np.floor(latents[factor] / (num_values / NUM_CLASSES)).astype(np.int64)
    return render(latents, image_size), labels


def generate_location(n: int, rng: np.random.Generator, image_size: int = 32) -> Batch:
    """dSprites images labelled by x position (32 positions binned into 16 classes).

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,) in [0, 16).
    """
    return _generate(n, rng, "pos_x", len(POSITIONS), image_size)


def generate_orientation(n: int, rng: np.random.Generator, image_size: int = 32) -> Batch:
    """dSprites images labelled by orientation (40 orientations binned into 16 classes, VTAB-style).

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,) in [0, 16).
    """
    return _generate(n, rng, "orientation", len(ORIENTATIONS), image_size)
