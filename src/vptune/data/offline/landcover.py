"""``landcover``: EuroSAT-like synthetic aerial patches; the land-cover type is the label.

Each class has a base palette (jittered per image) and its own structure: smooth water, high-frequency
canopy, smooth meadow, striped crop rows, a street grid with houses, large flat roofs, a straight grey road,
or a winding river. All classes get per-image brightness / haze changes and pixel noise. Rendered at 2x and
box-downsampled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vptune.data.offline._draw import chunks, downsample, pixel_grid, smooth_noise, to_uint8

CLASSES: tuple[str, ...] = (
    "sea_lake",
    "forest",
    "pasture",
    "annual_crop",
    "residential",
    "industrial",
    "highway",
    "river",
)
_SS = 2  # supersampling factor
_WATER = np.array([0.10, 0.22, 0.33])
_FOREST = np.array([0.12, 0.28, 0.12])
_GRASS = np.array([0.42, 0.55, 0.28])
_SOIL = np.array([0.50, 0.40, 0.28])
_ROAD = np.array([0.55, 0.55, 0.55])
_Field = Callable[[dict[str, np.ndarray], np.random.Generator, int], np.ndarray]


def _col(base: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Per-image palette colour: (3,) base + (m, 3) jitter -> (m, 1, 1, 3)."""
    return np.clip(base[None, :] + jitter, 0.0, 1.0)[:, None, None, :]


def _mix(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two (m, 1, 1, 3) colours with a (m, H, W) weight."""
    return c0 + (c1 - c0) * t[..., None]


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _vegetation(p: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Meadow with darker and drier patches: (m, size, size, 3)."""
    m = p["a"].shape[0]
    patches = smooth_noise(rng, m, size, 3)
    base = _mix(_col(_GRASS, p["jit"]), _col(_FOREST, p["jit"]), np.clip(patches - 0.35, 0.0, 1.0))
    return base * (0.9 + 0.2 * smooth_noise(rng, m, size, 10))[..., None]


def _sea_lake(p, rng, size):
    m = p["a"].shape[0]
    water = _col(_WATER, p["jit"] * 0.5) * (0.94 + 0.08 * smooth_noise(rng, m, size, 6))[..., None]
    shore = (p["u"] > 0.12 + 0.25 * p["b"]) & (p["c"] < 0.4)  # 40 % of patches show a strip of shore
    return _mix(water, _vegetation(p, rng, size), shore.astype(np.float64))


def _forest(p, rng, size):
    m = p["a"].shape[0]
    canopy = smooth_noise(rng, m, size, 14) * 0.7 + smooth_noise(rng, m, size, 4) * 0.3
    return _col(_FOREST, p["jit"]) * (0.65 + 0.7 * canopy)[..., None]


def _pasture(p, rng, size):
    m = p["a"].shape[0]
    dry = np.clip(smooth_noise(rng, m, size, 3) - 0.5, 0.0, 1.0) * 1.2
    return (
        _mix(_col(_GRASS, p["jit"]), _col(_SOIL, p["jit"]), dry)
        * (0.95 + 0.1 * smooth_noise(rng, m, size, 8))[..., None]
    )


def _annual_crop(p, rng, size):
    freq = 6.0 + 5.0 * p["a"]  # rows per canvas side
    second = p["v"] > 0.2 * (p["b"] - 0.5)  # two fields split by a line, rows at right angles
    coord = np.where(second, p["v"], p["u"])
    rows = (_frac(freq * coord + p["b"]) < 0.5).astype(np.float64)
    crop = np.where(second[..., None], _col(_SOIL, -p["jit"]), _col(_GRASS, p["jit"] * 1.5))
    return _mix(crop, _col(_SOIL, p["jit"]) * 0.8, rows * 0.7)


def _residential(p, rng, size):
    m = p["a"].shape[0]
    freq = 3.0 + 1.5 * p["a"]  # blocks per canvas side
    gu, gv = freq * p["u"] + p["b"], freq * p["v"] + p["c"]
    fu, fv = _frac(gu) - 0.5, _frac(gv) - 0.5
    street = (np.abs(fu) > 0.4) | (np.abs(fv) > 0.4)
    house = (np.abs(fu) < 0.25) & (np.abs(fv) < 0.22)
    # per-block roof colour from a small random table indexed by the block coordinates
    table = rng.uniform(0.35, 0.75, (m, 8, 8, 3)) * np.array([1.0, 0.75, 0.65])
    iu, iv = np.floor(gu).astype(np.int64) % 8, np.floor(gv).astype(np.int64) % 8
    roofs = table[np.arange(m)[:, None, None], iu, iv]  # (m, size, size, 3)
    img = _vegetation(p, rng, size) * 0.9
    img = np.where(house[..., None], roofs, img)
    return np.where(street[..., None], _col(_ROAD, p["jit"] * 0.3) * 0.9, img)


def _industrial(p, rng, size):
    m = p["a"].shape[0]
    img = _col(_ROAD, p["jit"] * 0.3) * (0.75 + 0.15 * smooth_noise(rng, m, size, 5))[..., None]
    for _ in range(4):  # large flat roofs, axis-aligned in the rotated frame
        cu, cv = rng.uniform(-0.4, 0.4, (2, m, 1, 1))
        hu, hv = rng.uniform(0.08, 0.22, (2, m, 1, 1))
        shade = rng.uniform(0.6, 0.95, (m, 1, 1, 1)) * np.array([1.0, 1.0, 1.05])
        roof = (np.abs(p["u"] - cu) < hu) & (np.abs(p["v"] - cv) < hv)
        img = np.where(roof[..., None], shade, img)
    return img


def _highway(p, rng, size):
    img = _vegetation(p, rng, size)
    offset = 0.3 * (p["b"] - 0.5)
    half = 0.035 + 0.03 * p["a"]
    road = np.abs(p["u"] - offset) < half
    verge = np.abs(p["u"] - offset) < half + 0.025
    img = np.where(verge[..., None], _col(_SOIL, p["jit"]) * 1.1, img)
    return np.where(road[..., None], _col(_ROAD, p["jit"] * 0.3), img)


def _river(p, rng, size):
    img = _vegetation(p, rng, size)
    centre = 0.25 * (p["b"] - 0.5) + (0.06 + 0.08 * p["a"]) * np.sin(2 * np.pi * (1.2 * p["v"] + p["c"]))
    half = 0.05 + 0.04 * p["c"]
    water = np.abs(p["u"] - centre) < half
    return np.where(water[..., None], _col(_WATER, p["jit"] * 0.5) * 1.1, img)


_FIELDS: tuple[_Field, ...] = (
    _sea_lake,
    _forest,
    _pasture,
    _annual_crop,
    _residential,
    _industrial,
    _highway,
    _river,
)


def generate(n: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Generates ``n`` aerial patches with uniformly random land-cover labels.

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,).
    """
    labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    theta = rng.uniform(0.0, 2 * np.pi, n)
    abc = rng.random((3, n))
    jitter = rng.uniform(-0.06, 0.06, (n, 3))
    gain = rng.uniform(0.85, 1.15, n)
    haze = rng.uniform(0.0, 0.12, n)
    size = image_size * _SS
    yy, xx = pixel_grid(size)
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for sl in chunks(n):
        m = sl.stop - sl.start
        img = np.empty((m, size, size, 3), dtype=np.float64)
        for k, field in enumerate(_FIELDS):
            idx = sl.start + np.flatnonzero(labels[sl] == k)
            if idx.size:
                c, s = np.cos(theta[idx])[:, None, None], np.sin(theta[idx])[:, None, None]
                p = {"a": abc[0, idx, None, None], "b": abc[1, idx, None, None], "c": abc[2, idx, None, None]}
                p["u"] = (xx - 0.5) * c + (yy - 0.5) * s  # (k, size, size) rotated, centred coordinates
                p["v"] = -(xx - 0.5) * s + (yy - 0.5) * c
                p["jit"] = jitter[idx]
                img[idx - sl.start] = field(p, rng, size)
        rgb = downsample(img, _SS) * gain[sl, None, None, None] + haze[sl, None, None, None]
        out[sl] = to_uint8(rgb + rng.normal(0.0, 0.02, rgb.shape))
    return out, labels
