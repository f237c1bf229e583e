"""``cells``: PatchCamelyon-like synthetic H&E microscopy patches (binary: tumour cluster present or not).

Both classes are drawn from the same stain, exposure, blur, noise and nucleus-count distributions, so that
colour and intensity statistics carry little label information. Every patch is eosin-pink stroma (smooth
texture) with 8-20 small round-to-oval hematoxylin-stained nuclei at random positions, plus one group of 8-12
larger nuclei centred in the middle of the patch (PCam labels a patch by its centre region). The group is
what differs:

- normal (0): a benign gland-like ring of evenly sized, smooth, oval nuclei, evenly spaced around a centre,
  each oriented along the ring, with homogeneous chromatin.
- tumour (1): a crowded, disordered clump of pleomorphic, somewhat enlarged nuclei with irregular lobed
  outlines and vesicular chromatin (darker rim, paler centre, a dark nucleolus).

The enlargement makes up for the overlap inside the clump, so both labels cover about the same dark area with
the same mean darkness. Stain colours (eosin and hematoxylin hue / saturation / value), a per-channel gain
and the exposure (x0.4-1) are drawn per patch. Nuclei are drawn with analytic anti-aliasing (coverage from
the signed edge distance in pixels); the patch is then blurred by a random amount (focus) and gets pixel
noise of a random strength.
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import chunks, composite_windows, hsv_to_rgb, smooth_noise, to_uint8, window_coords

CLASSES: tuple[str, ...] = ("normal", "tumour")
_SMALL = 20  # max small nuclei per patch
_GROUP = 12  # max nuclei in the central group
_PAD = 8  # canvas padding so that drawing windows never leave the array


def _blobs(rng: np.random.Generator, active: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> dict[str, np.ndarray]:
    """Per-blob parameters with neutral defaults (round, smooth, homogeneous); all arrays (n, k), radius in px."""
    shape = active.shape
    return {
        "active": active,
        "cx": cx,
        "cy": cy,
        "r": np.ones(shape),
        "aspect": np.ones(shape),
        "theta": rng.uniform(0.0, np.pi, shape),
        "lobe": np.zeros(shape),
        "lobe_phase": rng.uniform(0.0, 2 * np.pi, shape),
        "shade": rng.uniform(0.9, 1.1, shape),
        "vesicle": np.zeros(shape),
        "nucleolus": rng.uniform(-0.3, 0.3, shape + (2,)),
    }


def _draw(canvas: np.ndarray, blobs: dict[str, np.ndarray], colour: np.ndarray, win: int) -> None:
    """Composites blobs into a padded canvas one slot at a time (later slots on top), in place.

    Args:
        canvas: (m, S + 2 * _PAD, S + 2 * _PAD, 3) padded float canvas.
        blobs: Per-blob parameters, each (m, k) (``nucleolus``: (m, k, 2)); centres in pixels of the unpadded
            canvas.
        colour: (m, 3) hematoxylin colour per image.
        win: Window side length, large enough for the biggest blob plus its anti-aliased edge.
    """
    for j in range(blobs["cx"].shape[1]):
        if not blobs["active"][:, j].any():
            continue
        b = {key: val[:, j] for key, val in blobs.items()}  # each (m,) (nucleolus (m, 2))
        top, left, dx, dy = window_coords(b["cx"], b["cy"], win, _PAD)  # dx, dy: (m, win, win)
        c, s = np.cos(b["theta"])[:, None, None], np.sin(b["theta"])[:, None, None]
        r = b["r"][:, None, None]
        u, v = c * dx + s * dy, (-s * dx + c * dy) / b["aspect"][:, None, None]
        dist = np.sqrt(u * u + v * v)  # pixels in the blob's (stretched) frame
        ang, ph = np.arctan2(v, u), b["lobe_phase"][:, None, None]
        wobble = 0.55 * np.cos(2.0 * ang + ph) + 0.45 * np.cos(3.0 * ang + 2.0 * ph)
        edge = r * (1.0 + b["lobe"][:, None, None] * wobble)  # irregular outline when lobe > 0
        alpha = np.clip(edge - dist + 0.5, 0.0, 1.0) * (0.92 * b["active"])[:, None, None]
        # chromatin: vesicular nuclei are pale inside (darker rim) with a dark nucleolus; the shade is
        # rescaled so that the mean darkness of a nucleus does not depend on ``vesicle``
        ves = b["vesicle"][:, None, None]
        rel = np.clip(dist / np.maximum(edge, 0.5), 0.0, 1.0)
        nx, ny = b["nucleolus"][:, 0, None, None] * r, b["nucleolus"][:, 1, None, None] * r
        nucleolus = np.clip(1.2 - np.sqrt((dx - nx) ** 2 + (dy - ny) ** 2), 0.0, 1.0)
        light = 1.0 + ves * (0.55 * (1.0 - rel**2) - 0.25 - 0.6 * nucleolus)  # > 1: paler than the base
        col = colour[:, None, None, :] * (b["shade"][:, None, None] * light)[..., None]
        composite_windows(canvas, top, left, alpha, np.clip(col, 0.0, 1.0))


def _blur(x: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Per-image mix of ``x`` (m, H, W, 3) and its [1, 2, 1] / 4 binomial blur (twice), weight ``amount`` (m,)."""
    y = x
    for _ in range(2):
        p = np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        p = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
        y = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
    w = amount[:, None, None, None]
    return x * (1.0 - w) + y * w


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
    tumour = labels[:, None] == 1  # (n, 1)
    # small nuclei (both classes): random count, uniform positions over the patch (pixels)
    count = rng.integers(8, _SMALL + 1, n)
    small = _blobs(
        rng,
        np.arange(_SMALL)[None, :] < count[:, None],
        rng.uniform(-1.0, size + 1.0, (n, _SMALL)),
        rng.uniform(-1.0, size + 1.0, (n, _SMALL)),
    )
    small["r"] = rng.uniform(1.0, 1.8, (n, _SMALL))
    small["aspect"] = rng.uniform(0.6, 1.0, (n, _SMALL))
    # central group (both classes): same count, centre and mean size distributions
    k = rng.integers(8, _GROUP + 1, n)
    r0 = rng.uniform(1.8, 2.4, n)[:, None]  # typical radius of the group's nuclei
    ring_r = r0 * 1.05 / np.sin(np.pi / k)[:, None]  # normal: ring on which neighbouring nuclei just touch
    # centre in the middle of the patch, moved inwards where needed so that a ring of this size would fit
    # (for both labels, so the centre position says nothing about the label)
    centre = np.clip(rng.uniform(0.3 * size, 0.7 * size, (n, 2)), ring_r + r0, size - ring_r - r0)
    slot = np.arange(_GROUP)[None, :]
    # normal: evenly spaced on the ring
    phi = 2 * np.pi * (slot + rng.uniform(-0.08, 0.08, (n, _GROUP))) / k[:, None] + rng.uniform(0, 2 * np.pi, (n, 1))
    ring_x, ring_y = centre[:, :1] + ring_r * np.cos(phi), centre[:, 1:] + ring_r * np.sin(phi)
    # tumour: crowded clump, Gaussian scatter around the centre
    spread = rng.uniform(2.5, 4.0, (n, 1))
    clump_x = centre[:, :1] + spread * rng.standard_normal((n, _GROUP))
    clump_y = centre[:, 1:] + spread * rng.standard_normal((n, _GROUP))
    group = _blobs(
        rng,
        slot < k[:, None],
        np.clip(np.where(tumour, clump_x, ring_x), 1.0, size - 1.0),
        np.clip(np.where(tumour, clump_y, ring_y), 1.0, size - 1.0),
    )
    # tumour: pleomorphic (size varies within the clump) and enlarged by 15 % on average, which makes up for
    # the overlap in the clump: both labels end up with about the same dark area (14-15 % of the patch)
    pleo = rng.uniform(0.7, 1.3, (n, _GROUP))
    group["r"] = np.where(tumour, r0 * pleo * 1.15, r0 * rng.uniform(0.95, 1.05, (n, _GROUP)))
    group["aspect"] = np.where(tumour, rng.uniform(0.7, 1.0, (n, _GROUP)), rng.uniform(0.6, 0.8, (n, _GROUP)))
    group["theta"] = np.where(tumour, group["theta"], phi + np.pi / 2)  # ring: long axis along the ring
    group["lobe"] = np.where(tumour, rng.uniform(0.15, 0.35, (n, _GROUP)), 0.0)
    group["vesicle"] = np.where(tumour, rng.uniform(0.6, 1.0, (n, _GROUP)), 0.0)
    # stain: the same distributions for both classes
    eosin = hsv_to_rgb(rng.uniform(0.86, 0.98, n), rng.uniform(0.12, 0.4, n), rng.uniform(0.78, 0.96, n))
    hema = hsv_to_rgb(rng.uniform(0.68, 0.8, n), rng.uniform(0.3, 0.7, n), rng.uniform(0.35, 0.65, n))
    gain = rng.uniform(0.9, 1.1, (n, 3)) * rng.uniform(0.4, 1.0, (n, 1))  # stain / exposure jitter
    blur = rng.uniform(0.0, 0.8, n)
    noise = rng.uniform(0.015, 0.04, n)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for sl in chunks(n):
        m = sl.stop - sl.start
        texture = smooth_noise(rng, m, size, 6)[..., None]  # (m, S, S, 1) stroma fibres / density
        canvas = eosin[sl, None, None, :] * (0.92 + 0.12 * texture)
        canvas = np.pad(canvas, ((0, 0), (_PAD, _PAD), (_PAD, _PAD), (0, 0)))
        _draw(canvas, {key: val[sl] for key, val in small.items()}, hema[sl], 8)
        _draw(canvas, {key: val[sl] for key, val in group.items()}, hema[sl], 12)
        canvas = _blur(canvas[:, _PAD:-_PAD, _PAD:-_PAD], blur[sl])
        canvas = canvas + noise[sl, None, None, None] * rng.standard_normal((m, size, size, 3))
        out[sl] = to_uint8(canvas * gain[sl, None, None, :])
    return out, labels
