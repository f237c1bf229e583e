"""Small numpy drawing helpers shared by the offline task generators.

Conventions: while drawing, images are float64 in [0, 1] with layout (n, H, W) for masks / intensity fields
and (n, H, W, 3) for colour. float64 (not float32) and no BLAS calls keep the results bit-identical across
machines after the final rounding to uint8. Coordinates are in canvas units: pixel centres in (0, 1).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 256  # images rendered at once; bounds peak memory, fixed so outputs never depend on it


def chunks(n: int, size: int = CHUNK) -> Iterator[slice]:
    """Yields consecutive slices covering ``range(n)`` in pieces of at most ``size``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in canvas units.

    Args:
        size: Side length of the square canvas in pixels.

    Returns:
        ``(yy, xx)``, each (size, size) float64 in (0, 1); ``yy`` grows downwards, ``xx`` to the right.
    """
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return yy, xx


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and clamped edges (like PIL / align_corners=False).

    Args:
        x: (n, h, w) float array.
        size: Output side length.

    Returns:
        (n, size, size) float64.
    """

    def _axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0, n_in - 1.0)
        lo = np.floor(pos).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    x = np.asarray(x, dtype=np.float64)
    lo, hi, w = _axis(x.shape[1])
    x = x[:, lo, :] * (1.0 - w)[None, :, None] + x[:, hi, :] * w[None, :, None]  # (n, size, w)
    lo, hi, w = _axis(x.shape[2])
    return x[:, :, lo] * (1.0 - w)[None, None, :] + x[:, :, hi] * w[None, None, :]  # (n, size, size)


def smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Value noise: uniform random values on a coarse grid, bilinearly upsampled.

    Args:
        rng: Random generator.
        n: Number of fields.
        size: Output side length.
        cells: Coarse grid side length (larger = finer blotches).

    Returns:
        (n, size, size) float64 in [0, 1].
    """
    return resize_bilinear(rng.random((n, cells, cells)), size)


def downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsampling of (n, H, W, ...) by an integer factor (supersampling anti-aliasing)."""
    if factor == 1:
        return x
    n, h, w = x.shape[:3]
    x = x.reshape(n, h // factor, factor, w // factor, factor, *x.shape[3:])
    return x.mean(axis=(2, 4))


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB.

    Args:
        h: (n,) hue in [0, 1).
        s: (n,) saturation in [0, 1].
        v: (n,) value in [0, 1].

    Returns:
        (n, 3) float64 RGB in [0, 1].
    """
    k = np.array([5.0, 3.0, 1.0])
    t = np.mod(k[None, :] + h[:, None] * 6.0, 6.0)  # (n, 3)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(t, 4.0 - t), 0.0, 1.0)


def random_colours(
    rng: np.random.Generator,
    n: int,
    sat: tuple[float, float] = (0.4, 1.0),
    val: tuple[float, float] = (0.6, 1.0),
) -> np.ndarray:
    """Random colours with uniform hue and saturation / value drawn uniformly from the given ranges.

    Returns:
        (n, 3) float64 RGB in [0, 1].
    """
    h = rng.random(n)
    s = rng.uniform(sat[0], sat[1], n)
    v = rng.uniform(val[0], val[1], n)
    return hsv_to_rgb(h, s, v)


def blend(bg: np.ndarray, fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composites ``fg`` over ``bg``.

    Args:
        bg: (n, H, W, 3) canvas.
        fg: (n, 3) per-image colours or (n, H, W, 3) colour field.
        alpha: (n, H, W) coverage in [0, 1].

    Returns:
        (n, H, W, 3) composited canvas.
    """
    if fg.ndim == 2:
        fg = fg[:, None, None, :]
    a = alpha[..., None]
    return bg * (1.0 - a) + fg * a


def two_colour(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Maps an intensity field to colour: ``c0`` where t = 0, ``c1`` where t = 1.

    Args:
        t: (n, H, W) field in [0, 1].
        c0: (n, 3) colours.
        c1: (n, 3) colours.

    Returns:
        (n, H, W, 3) float64.
    """
    return c0[:, None, None, :] + (c1 - c0)[:, None, None, :] * t[..., None]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Clips a float image batch to [0, 1] and rounds to uint8 (half-to-even, platform independent)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def grey_to_rgb(x: np.ndarray) -> np.ndarray:
    """(n, H, W) -> (n, H, W, 3) by repeating the channel."""
    return np.repeat(x[..., None], 3, axis=-1)


def window_coords(
    cx: np.ndarray, cy: np.ndarray, win: int, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local pixel windows around sub-pixel centres, for drawing small objects cheaply.

    Args:
        cx: (n,) object centres in pixels (x); may lie slightly outside the canvas.
        cy: (n,) object centres in pixels (y).
        win: Window side length in pixels.
        pad: Padding of the canvas the windows index into (see :func:`composite_windows`).

    Returns:
        ``(top, left, dx, dy)``: (n,) int64 window origins in the padded canvas and (n, win, win)
        float64 offsets of each window pixel centre from the object centre, in pixels.
    """
    x0 = np.floor(cx).astype(np.int64) - win // 2  # (n,) unpadded window origin
    y0 = np.floor(cy).astype(np.int64) - win // 2
    offs = np.arange(win, dtype=np.float64) + 0.5
    dx = (x0[:, None] + offs[None, :] - cx[:, None])[:, None, :] * np.ones((1, win, 1))  # (n, win, win)
    dy = (y0[:, None] + offs[None, :] - cy[:, None])[:, :, None] * np.ones((1, 1, win))
    return y0 + pad, x0 + pad, dx, dy


def composite_windows(
    canvas: np.ndarray, top: np.ndarray, left: np.ndarray, alpha: np.ndarray, colour: np.ndarray
) -> None:
    """Alpha-composites one window per image into a padded canvas, in place.

    Args:
        canvas: (n, H + 2 * pad, W + 2 * pad, 3) padded canvas; windows must lie inside it.
        top: (n,) window origins (rows) in the padded canvas.
        left: (n,) window origins (columns) in the padded canvas.
        alpha: (n, win, win) coverage in [0, 1].
        colour: (n, 3) colours or (n, win, win, 3) colour windows.
    """
    n, win = alpha.shape[:2]
    steps = np.arange(win)
    rows = (top[:, None] + steps[None, :])[:, :, None]  # (n, win, 1)
    cols = (left[:, None] + steps[None, :])[:, None, :]  # (n, 1, win)
    ii = np.arange(n)[:, None, None]
    canvas[ii, rows, cols] = blend(canvas[ii, rows, cols], colour, alpha)
