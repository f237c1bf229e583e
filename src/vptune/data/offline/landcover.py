"""``landcover``: EuroSAT-like synthetic aerial patches; the land-cover type is the label.

The classes share one colour distribution: every image draws a ground colour, a feature colour (one dark, one
light, in random order) and an accent colour from the same earth-tone palette (hues from orange-brown through
green to blue), whatever its class, and gets a strong per-channel colour jitter, gain and haze on top. Colour
and brightness statistics therefore carry (almost) no label information; the class is the spatial structure:
a nearly uniform water surface, a fine clumpy canopy, large soft meadow patches, parallel crop rows, a street
grid with houses, a few large flat roofs, one straight road with verges, or one winding river. Rendered at 2x
and box-downsampled, at a random rotation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vptune.data.offline._draw import chunks, downsample, hsv_to_rgb, pixel_grid, smooth_noise, to_uint8

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
_Field = Callable[[dict[str, np.ndarray], np.random.Generator, int], np.ndarray]


def _mix(c0: np.ndarray, c1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two (m, 1, 1, 3) colours (or colour fields) with a (m, H, W) weight."""
    return c0 + (c1 - c0) * t[..., None]


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _ground(p: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Ground colour with a soft low-frequency variation (x0.9-1.1): (m, size, size, 3)."""
    m = p["a"].shape[0]
    return p["c0"] * (0.9 + 0.2 * smooth_noise(rng, m, size, 4))[..., None]


def _sea_lake(p, rng, size):
    m = p["a"].shape[0]
    water = p["c0"] * (0.96 + 0.08 * smooth_noise(rng, m, size, 3))[..., None]
    wobble = 0.05 * (smooth_noise(rng, m, size, 3) - 0.5)
    shore = (p["u"] + wobble > 0.15 + 0.25 * p["b"]) & (p["c"] < 0.4)  # 40 % of patches show a strip of shore
    return np.where(shore[..., None], _ground({**p, "c0": p["c1"]}, rng, size), water)


def _forest(p, rng, size):
    m = p["a"].shape[0]
    canopy = smooth_noise(rng, m, size, 14) * 0.7 + smooth_noise(rng, m, size, 5) * 0.3
    return _mix(p["c0"], p["c1"], np.clip((canopy - 0.5) * (2.0 + 2.0 * p["a"]) + 0.5, 0.0, 1.0))


def _pasture(p, rng, size):
    m = p["a"].shape[0]
    patches = np.clip((smooth_noise(rng, m, size, 3) - 0.35 - 0.3 * p["a"]) * 4.0, 0.0, 1.0)
    return _mix(_ground(p, rng, size), p["c1"], patches)


def _annual_crop(p, rng, size):
    freq = 5.0 + 5.0 * p["a"]  # rows per canvas side
    second = p["v"] > 0.4 * (p["b"] - 0.5)  # two fields split by a line, rows at right angles
    coord = np.where(second, p["v"], p["u"])
    rows = (_frac(freq * coord + p["b"]) < 0.35 + 0.3 * p["c"]).astype(np.float64)
    field = np.where(second[..., None], p["c2"], p["c0"])
    return _mix(field, p["c1"], rows)


def _residential(p, rng, size):
    m = p["a"].shape[0]
    freq = 3.0 + 1.5 * p["a"]  # blocks per canvas side
    gu, gv = freq * p["u"] + p["b"], freq * p["v"] + p["c"]
    fu, fv = _frac(gu) - 0.5, _frac(gv) - 0.5
    street = (np.abs(fu) > 0.4) | (np.abs(fv) > 0.4)
    house = (np.abs(fu) < 0.25) & (np.abs(fv) < 0.22)
    # per-block roof shade (x0.75-1.25 of the accent colour), from a small table indexed by the block coordinates
    table = rng.uniform(0.75, 1.25, (m, 8, 8))
    iu, iv = np.floor(gu).astype(np.int64) % 8, np.floor(gv).astype(np.int64) % 8
    roofs = p["c2"] * table[np.arange(m)[:, None, None], iu, iv][..., None]
    img = np.where(house[..., None], roofs, _ground(p, rng, size))
    return np.where(street[..., None], p["c1"], img)


def _industrial(p, rng, size):
    m = p["a"].shape[0]
    img = _ground(p, rng, size)
    for j in range(4):  # large flat roofs, axis-aligned in the rotated frame
        cu, cv = rng.uniform(-0.4, 0.4, (2, m, 1, 1))
        hu, hv = rng.uniform(0.08, 0.22, (2, m, 1, 1))
        roof = (np.abs(p["u"] - cu) < hu) & (np.abs(p["v"] - cv) < hv)
        colour = (p["c1"] if j % 2 else p["c2"]) * rng.uniform(0.85, 1.15, (m, 1, 1, 1))
        img = np.where(roof[..., None], colour, img)
    return img


def _highway(p, rng, size):
    img = _ground(p, rng, size)
    offset = 0.3 * (p["b"] - 0.5)
    half = 0.035 + 0.035 * p["a"]
    road = np.abs(p["u"] - offset) < half
    verge = np.abs(p["u"] - offset) < half + 0.025
    img = np.where(verge[..., None], p["c2"], img)
    return np.where(road[..., None], p["c1"], img)


def _river(p, rng, size):
    img = _ground(p, rng, size)
    centre = 0.25 * (p["b"] - 0.5) + (0.06 + 0.08 * p["a"]) * np.sin(2 * np.pi * (1.2 * p["v"] + p["c"]))
    half = 0.05 + 0.04 * p["c"]
    return np.where((np.abs(p["u"] - centre) < half)[..., None], p["c1"], img)


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


def _palette(rng: np.random.Generator, n: int, val: tuple[float, float]) -> np.ndarray:
    """Earth-tone colours, the same distribution for every class: (n, 3)."""
    return hsv_to_rgb(rng.uniform(0.02, 0.62, n), rng.uniform(0.1, 0.6, n), rng.uniform(val[0], val[1], n))


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
    dark, light = _palette(rng, n, (0.15, 0.45)), _palette(rng, n, (0.5, 0.85))
    swap = rng.random(n) < 0.5  # ground dark and features light, or the reverse
    colours = np.stack([np.where(swap[:, None], light, dark), np.where(swap[:, None], dark, light)])
    colours = np.concatenate([colours, _palette(rng, n, (0.15, 0.85))[None]])  # (3, n, 3): ground, feature, accent
    gain = rng.uniform(0.8, 1.2, (n, 3)) * rng.uniform(0.85, 1.15, (n, 1))  # per-channel colour jitter, brightness
    haze = rng.uniform(0.0, 0.15, n)
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
                for j in range(3):
                    p[f"c{j}"] = colours[j, idx][:, None, None, :]  # (k, 1, 1, 3)
                img[idx - sl.start] = field(p, rng, size)
        rgb = downsample(img, _SS) * gain[sl, None, None, :] + haze[sl, None, None, None]
        out[sl] = to_uint8(rgb + rng.normal(0.0, 0.02, rgb.shape))
    return out, labels
