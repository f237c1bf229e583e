"""``cells``: PatchCamelyon-like synthetic H&E microscopy patches (binary: tumour cluster present or not).

Every patch is pink stroma (smooth texture) with 18-40 small, round-to-oval purple nuclei at random
positions; per-patch stain colour and brightness vary. Positive patches additionally contain a cluster of 4-9
larger, darker nuclei with irregular (lobed) outlines, centred in the middle half of the patch (PCam labels a
patch positive when its centre region contains tumour tissue). To keep size alone from giving the label
away, about a third of the negative patches contain 1-3 scattered enlarged (but round, paler) nuclei.
Nuclei are drawn with analytic anti-aliasing (coverage from the signed edge distance in pixels).
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import chunks, composite_windows, smooth_noise, to_uint8, window_coords

CLASSES: tuple[str, ...] = ("normal", "tumour")
_NORMAL = 40  # max normal nuclei per patch
_TUMOUR = 9  # max tumour nuclei per patch
_DECOY = 3  # max scattered enlarged nuclei in negatives
_PAD = 8  # canvas padding so that drawing windows never leave the array

_STROMA = np.array([0.93, 0.74, 0.84])
_NUCLEUS = np.array([0.50, 0.30, 0.62])
_TUMOUR_NUCLEUS = np.array([0.30, 0.12, 0.40])


def _blobs(
    rng: np.random.Generator,
    active: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: tuple[float, float],
    lobes: float,
) -> dict[str, np.ndarray]:
    """Samples per-blob shape parameters; all inputs / outputs are (n, k) arrays (radius in pixels)."""
    shape = active.shape
    return {
        "active": active,
        "cx": cx,
        "cy": cy,
        "r": rng.uniform(radius[0], radius[1], shape),
        "aspect": rng.uniform(0.7, 1.0, shape),
        "theta": rng.uniform(0.0, np.pi, shape),
        "lobe": lobes * rng.uniform(0.5, 1.0, shape),
        "lobe_phase": rng.uniform(0.0, 2 * np.pi, shape),
        "shade": rng.uniform(0.85, 1.15, shape),
    }


def _draw(canvas: np.ndarray, blobs: dict[str, np.ndarray], colour: np.ndarray, win: int) -> None:
    """Composites blobs into a padded canvas one slot at a time (later slots on top), in place.

    Args:
        canvas: (m, S + 2 * _PAD, S + 2 * _PAD, 3) padded float canvas.
        blobs: Per-blob parameters, each (m, k); centres in pixels of the unpadded canvas.
        colour: (m, 3) base nucleus colour per image.
        win: Window side length, large enough for the biggest blob plus its anti-aliased edge.
    """
    for j in range(blobs["cx"].shape[1]):
        if not blobs["active"][:, j].any():
            continue
        b = {key: val[:, j] for key, val in blobs.items()}  # each (m,)
        top, left, dx, dy = window_coords(b["cx"], b["cy"], win, _PAD)  # dx, dy: (m, win, win)
        c, s = np.cos(b["theta"])[:, None, None], np.sin(b["theta"])[:, None, None]
        u, v = c * dx + s * dy, (-s * dx + c * dy) / b["aspect"][:, None, None]
        dist = np.sqrt(u * u + v * v)  # pixels in the blob's (stretched) frame
        edge = b["r"][:, None, None]
        if b["lobe"].any():  # irregular outline: radius modulated by 2- and 3-lobed cosines of the angle
            ang, ph = np.arctan2(v, u), b["lobe_phase"][:, None, None]
            wobble = 0.55 * np.cos(2.0 * ang + ph) + 0.45 * np.cos(3.0 * ang + 2.0 * ph)
            edge = edge * (1.0 + b["lobe"][:, None, None] * wobble)
        alpha = np.clip(edge - dist + 0.5, 0.0, 1.0) * (0.92 * b["active"])[:, None, None]
        composite_windows(canvas, top, left, alpha, np.clip(colour * b["shade"][:, None], 0.0, 1.0))


def generate(n: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Generates ``n`` synthetic microscopy patches with balanced random labels (0 normal, 1 tumour).

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length.

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,).
    """
    size = image_size
    labels = rng.integers(0, 2, n).astype(np.int64)
    # normal nuclei: random count, uniform positions over the patch (pixels)
    count = rng.integers(18, _NORMAL + 1, n)
    normal = _blobs(
        rng,
        np.arange(_NORMAL)[None, :] < count[:, None],
        rng.uniform(-1.0, size + 1.0, (n, _NORMAL)),
        rng.uniform(-1.0, size + 1.0, (n, _NORMAL)),
        (1.0, 1.9),
        0.0,
    )
    # tumour cluster (positives only): centre in the middle half, nuclei scattered around it
    centre = rng.uniform(0.25 * size, 0.75 * size, (n, 2))
    spread = rng.uniform(0.12, 0.2, n)[:, None] * size
    n_tumour = rng.integers(4, _TUMOUR + 1, n)
    tumour = _blobs(
        rng,
        (np.arange(_TUMOUR)[None, :] < n_tumour[:, None]) & (labels[:, None] == 1),
        np.clip(centre[:, :1] + spread * rng.standard_normal((n, _TUMOUR)), 1.0, size - 1.0),
        np.clip(centre[:, 1:] + spread * rng.standard_normal((n, _TUMOUR)), 1.0, size - 1.0),
        (2.4, 3.6),
        0.3,
    )
    # decoys (a third of the negatives): a few enlarged, round, paler nuclei anywhere
    n_decoy = rng.integers(1, _DECOY + 1, n) * ((labels == 0) & (rng.random(n) < 0.35))
    decoy = _blobs(
        rng,
        np.arange(_DECOY)[None, :] < n_decoy[:, None],
        rng.uniform(2.0, size - 2.0, (n, _DECOY)),
        rng.uniform(2.0, size - 2.0, (n, _DECOY)),
        (2.2, 3.0),
        0.0,
    )
    stain = rng.uniform(0.88, 1.12, (n, 3))  # per-patch stain variation, (n, 3)
    brightness = rng.uniform(0.9, 1.05, n)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for sl in chunks(n):
        m = sl.stop - sl.start
        st = stain[sl] * brightness[sl, None]  # (m, 3)
        texture = smooth_noise(rng, m, size, 6)[..., None]  # (m, S, S, 1) stroma fibres / density
        canvas = (_STROMA * st)[:, None, None, :] * (0.9 + 0.15 * texture)
        nucleus = np.clip(_NUCLEUS * st, 0.0, 1.0)
        canvas = np.pad(canvas, ((0, 0), (_PAD, _PAD), (_PAD, _PAD), (0, 0)))
        _draw(canvas, {k: v[sl] for k, v in normal.items()}, nucleus, 8)
        _draw(canvas, {k: v[sl] for k, v in decoy.items()}, nucleus * 0.92, 10)
        _draw(canvas, {k: v[sl] for k, v in tumour.items()}, _TUMOUR_NUCLEUS * st, 14)
        canvas = canvas[:, _PAD:-_PAD, _PAD:-_PAD] + rng.normal(0.0, 0.03, (m, size, size, 3))
        out[sl] = to_uint8(canvas)
    return out, labels
