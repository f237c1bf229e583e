"""``textures``: procedural, DTD-like texture classes (pattern type is the label).

Every image is a two-colour pattern (random colours, one light and one dark, in random order) at a random
orientation, frequency and phase, with low-frequency illumination changes and pixel noise. Patterns are
rendered at 2x resolution and box-downsampled for anti-aliasing.
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import (
    chunks,
    downsample,
    pixel_grid,
    random_colours,
    smooth_noise,
    to_uint8,
    two_colour,
)

CLASSES: tuple[str, ...] = (
    "striped",
    "chequered",
    "dotted",
    "grid",
    "crosshatched",
    "wavy",
    "zigzagged",
    "blotchy",
    "marbled",
    "speckled",
)
# Pattern frequency range (periods per canvas side) per class, same order as CLASSES.
_FREQ = np.array(
    [(3, 7), (2, 4.5), (3, 6), (3, 5.5), (4, 7), (3, 6), (3, 6), (1, 1), (2, 4), (1, 1)],
    dtype=np.float64,
)
_SS = 2  # supersampling factor


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _lines(x: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Thin lines at integer values of ``x``; ``width`` (m, 1, 1) is the line width in periods."""
    return np.abs(_frac(x) - 0.5) > 0.5 - width


def _pattern(k: int, p: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Renders the binary / grey pattern of class ``k`` for m images.

    Args:
        k: Class index into CLASSES.
        p: Per-image parameters, each (m, 1, 1): theta, freq, ph1, ph2, a, b (a, b uniform in [0, 1)).
        rng: Random generator for noise-based classes.
        size: Render resolution.

    Returns:
        (m, size, size) float64 intensity in [0, 1].
    """
    m = p["theta"].shape[0]
    yy, xx = pixel_grid(size)
    x, y = xx[None] - 0.5, yy[None] - 0.5  # (1, size, size), centred
    cos, sin = np.cos(p["theta"]), np.sin(p["theta"])
    u = x * cos + y * sin  # (m, size, size) rotated coordinates
    v = -x * sin + y * cos
    f, ph1, ph2, a, b = p["freq"], p["ph1"], p["ph2"], p["a"], p["b"]
    name = CLASSES[k]
    if name == "striped":
        t = _frac(f * u + ph1) < 0.3 + 0.3 * a
    elif name == "chequered":
        t = (_frac(f * u + ph1) < 0.5) ^ (_frac(f * v + ph2) < 0.5)
    elif name == "dotted":
        r = 0.18 + 0.14 * a
        t = (_frac(f * u + ph1) - 0.5) ** 2 + (_frac(f * v + ph2) - 0.5) ** 2 < r**2
    elif name == "grid":
        w = 0.08 + 0.08 * a
        t = _lines(f * u + ph1, w) | _lines(f * v + ph2, w)
    elif name == "crosshatched":
        delta = np.deg2rad(35.0 + 25.0 * b)  # angle between the two line families, not 90 degrees
        u2 = x * np.cos(p["theta"] + delta) + y * np.sin(p["theta"] + delta)
        w = 0.1 + 0.08 * a
        t = _lines(f * u + ph1, w) | _lines(f * u2 + ph2, w)
    elif name in ("wavy", "zigzagged"):
        g = 1.5 + 1.5 * b  # wave cycles per canvas along the stripes
        if name == "wavy":
            disp = (0.03 + 0.05 * a) * np.sin(2 * np.pi * (g * v + ph2))
        else:
            disp = (0.04 + 0.06 * a) * (4.0 * np.abs(_frac(g * v + ph2) - 0.5) - 1.0)
        t = _frac(f * (u + disp) + ph1) < 0.45
    elif name == "blotchy":
        t = smooth_noise(rng, m, size, 5) > 0.4 + 0.2 * a
    elif name == "marbled":
        turb = smooth_noise(rng, m, size, 4)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (f * u + (1.0 + a) * turb + ph1))
    else:  # speckled: isolated specks at output resolution
        s = size // _SS
        specks = rng.random((m, s, s)) < 0.06 + 0.12 * a
        t = np.repeat(np.repeat(specks, _SS, axis=1), _SS, axis=2)
    return np.asarray(t, dtype=np.float64)


def generate(n: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Generates ``n`` texture images with uniformly random class labels.

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,).
    """
    labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    lo, hi = _FREQ[labels, 0], _FREQ[labels, 1]
    params = {
        "theta": rng.uniform(0.0, np.pi, n),
        "freq": lo + (hi - lo) * rng.random(n),
        "ph1": rng.random(n),
        "ph2": rng.random(n),
        "a": rng.random(n),
        "b": rng.random(n),
    }
    dark = random_colours(rng, n, sat=(0.0, 1.0), val=(0.05, 0.45))  # (n, 3)
    light = random_colours(rng, n, sat=(0.0, 1.0), val=(0.6, 1.0))  # (n, 3)
    swap = rng.random(n) < 0.5
    c0 = np.where(swap[:, None], light, dark)
    c1 = np.where(swap[:, None], dark, light)
    size = image_size * _SS
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for sl in chunks(n):
        m = sl.stop - sl.start
        t = np.empty((m, size, size), dtype=np.float64)
        for k in range(len(CLASSES)):
            idx = np.flatnonzero(labels[sl] == k)
            if idx.size:
                sub = {key: val[sl][idx][:, None, None] for key, val in params.items()}
                t[idx] = _pattern(k, sub, rng, size)
        rgb = downsample(two_colour(t, c0[sl], c1[sl]), _SS)  # (m, S, S, 3)
        light_field = 0.85 + 0.3 * smooth_noise(rng, m, image_size, 3)  # (m, S, S) illumination
        rgb = rgb * light_field[..., None] + rng.normal(0.0, 0.025, rgb.shape)
        out[sl] = to_uint8(rgb)
    return out, labels
