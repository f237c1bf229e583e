"""``clevr_count``: CLEVR-style scenes (Johnson et al. 2017); the label is the number of objects minus 3.

Scenes hold 3-10 objects (count uniform over the 8 classes): shaded spheres, cubes and cylinders in the 8
CLEVR colours, rubber (matte) or metal (with a specular highlight), two sizes, standing on a grey floor.
Mild perspective: objects lower in the image (closer) are drawn larger, and objects are painted far to
near so that near objects occlude far ones. Positions are placed by rejection sampling so that objects may
touch or overlap slightly but stay mostly visible. Soft shadows fall down-right of each object.
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import chunks, composite_windows, pixel_grid, to_uint8, window_coords

CLASSES: tuple[str, ...] = tuple(str(c) for c in range(3, 11))
MAX_OBJECTS = 10
SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder")
COLOURS = (
    np.array(
        [[87, 87, 87], [173, 35, 35], [42, 75, 215], [29, 105, 20], [129, 74, 25], [129, 38, 192]]
        + [[41, 208, 208], [255, 238, 51]],
        dtype=np.float64,
    )
    / 255.0
)  # gray, red, blue, green, brown, purple, cyan, yellow (CLEVR's palette)
_RADIUS = (2.4, 3.9)  # small / large object radius in pixels at unit perspective scale (32 px canvas)
_CANDIDATES = 24  # rejection-sampling candidates per object
_PAD = 10
# light direction: from the upper left, towards the viewer
_LIGHT = np.array([-0.45, -0.6, 0.66]) / np.linalg.norm([-0.45, -0.6, 0.66])


def _place(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples non-overlapping (up to slight overlap) object positions for all slots.

    Returns:
        ``(cx, cy, r)``: each (n, MAX_OBJECTS) float64 in pixels (radius includes perspective).
    """
    big = rng.random((n, MAX_OBJECTS)) < 0.5
    cx = np.zeros((n, MAX_OBJECTS))
    cy = np.zeros((n, MAX_OBJECTS))
    r = np.zeros((n, MAX_OBJECTS))
    for k in range(MAX_OBJECTS):
        cand_y = rng.uniform(0.3, 0.88, (n, _CANDIDATES))  # canvas units
        cand_x = rng.uniform(0.1, 0.9, (n, _CANDIDATES))
        scale = 0.55 + 0.6 * cand_y  # perspective: closer (lower) objects are larger
        cand_r = np.where(big[:, k : k + 1], _RADIUS[1], _RADIUS[0]) * scale  # (n, C) pixels
        if k == 0:
            pick = np.zeros(n, dtype=np.int64)
        else:
            ddx = cand_x[:, :, None] * size - cx[:, None, :k]  # (n, C, k)
            ddy = cand_y[:, :, None] * size - cy[:, None, :k]
            gap = np.sqrt(ddx**2 + ddy**2) - 0.8 * (cand_r[:, :, None] + r[:, None, :k])
            clearance = gap.min(axis=2)  # (n, C); >= 0 means acceptable
            ok = clearance >= 0
            pick = np.where(ok.any(axis=1), ok.argmax(axis=1), clearance.argmax(axis=1))
        rows = np.arange(n)
        cx[:, k] = cand_x[rows, pick] * size
        cy[:, k] = cand_y[rows, pick] * size
        r[:, k] = cand_r[rows, pick]
    return cx, cy, r


def _ellipse_cover(u: np.ndarray, v: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Approximate anti-aliased coverage of the unit ellipse at normalised offsets (u, v)."""
    return np.clip((1.0 - np.sqrt(u**2 + v**2)) * radius + 0.5, 0.0, 1.0)


def _shade(
    shape: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: np.ndarray, metal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and brightness of one object per image inside its window.

    Args:
        shape: (m,) shape index into SHAPES.
        dx: (m, w, w) pixel offsets from the object centre.
        dy: (m, w, w) pixel offsets from the object centre.
        r: (m, 1, 1) object radius in pixels.
        metal: (m, 1, 1) bool, metal material.

    Returns:
        ``(alpha, light, gloss)``: (m, w, w) each: coverage in [0, 1], diffuse brightness factor and
        additive white specular highlight.
    """
    shape = shape[:, None, None]
    # sphere: disc with Lambertian shading from the surface normal, plus a highlight for metal
    nx, ny = dx / r, dy / r
    nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
    lam = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)
    spec = np.exp(-((nx + 0.35) ** 2 + (ny + 0.4) ** 2) / 0.03)
    sphere_a = np.clip(r - np.sqrt(dx**2 + dy**2) + 0.5, 0.0, 1.0)
    sphere_l = 0.3 + 0.8 * lam
    sphere_g = np.where(metal, 0.7, 0.12) * spec
    # cube: square seen slightly from above: bright top face, darker right face, medium front
    h = 0.85 * r
    cube_a = np.clip(h - np.abs(dx) + 0.5, 0.0, 1.0) * np.clip(h - np.abs(dy) + 0.5, 0.0, 1.0)
    cube_l = np.where(dy < -0.35 * h, 1.05, np.where(dx > 0.45 * h, 0.55, 0.78))
    # cylinder: vertical body with elliptical bottom, lighter elliptical top cap
    w, top, bottom = 0.75 * r, -0.65 * r, 0.8 * r
    body_x = np.clip(w - np.abs(dx) + 0.5, 0.0, 1.0)
    body = body_x * np.clip(np.minimum(dy - top, bottom - dy) + 0.5, 0.0, 1.0)
    cap = _ellipse_cover(dx / w, (dy - top) / (0.35 * r), 0.5 * r)
    base = _ellipse_cover(dx / w, (dy - bottom) / (0.35 * r), 0.5 * r)
    cyl_a = np.maximum(np.maximum(body, cap), base)
    cyl_l = np.where((cap > 0.5) & (dy < top + 0.2 * r), 1.05, 0.45 + 0.45 * np.clip(0.6 - dx / w, 0.0, 1.0))
    cyl_g = np.where(metal, 0.4, 0.0) * np.exp(-((dx / w + 0.45) ** 2) / 0.02) * (dy > top) * (dy < bottom)
    alpha = np.select([shape == 0, shape == 1], [sphere_a, cube_a], cyl_a)
    light = np.select([shape == 0, shape == 1], [sphere_l, cube_l], cyl_l)
    cube_g = np.where(metal, 0.12, 0.0) * (dy < -0.35 * h)
    gloss = np.select([shape == 0, shape == 1], [sphere_g, cube_g], cyl_g)
    return alpha, light, gloss


def generate(n: int, rng: np.random.Generator, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Generates ``n`` CLEVR-style scenes; label = object count - 3, uniform over 8 classes.

    Args:
        n: Number of images.
        rng: Random generator; the only source of randomness.
        image_size: Output side length (object sizes are tuned for 32).

    Returns:
        ``(images, labels)``: uint8 (n, S, S, 3) and int64 (n,) in [0, 8).
    """
    size = image_size
    sc = size / 32.0
    labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    active = np.arange(MAX_OBJECTS)[None, :] < (labels + 3)[:, None]  # (n, K)
    cx, cy, r = _place(rng, n, size)
    r = r * sc
    shape = rng.integers(0, len(SHAPES), (n, MAX_OBJECTS))
    colour = COLOURS[rng.integers(0, len(COLOURS), (n, MAX_OBJECTS))]  # (n, K, 3)
    colour = np.clip(colour * rng.uniform(0.9, 1.1, (n, 1, 1)), 0.0, 1.0)
    metal = rng.random((n, MAX_OBJECTS)) < 0.4
    order = np.argsort(np.where(active, cy, np.inf), axis=1, kind="stable")  # paint far (small y) first
    floor = rng.uniform(0.42, 0.56, n)
    yy, xx = pixel_grid(size)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    obj_win, shadow_win = int(16 * sc), int(14 * sc)
    for sl in chunks(n):
        m = sl.stop - sl.start
        rows = np.arange(sl.start, sl.stop)
        # floor: lighter towards the viewer (bottom), darker towards the corners
        vignette = 0.8 + 0.3 * yy - 0.25 * (xx - 0.5) ** 2  # (S, S)
        canvas = floor[sl, None, None, None] * vignette[None, :, :, None] * np.ones(3)
        canvas = canvas + rng.normal(0.0, 0.008, canvas.shape)
        canvas = np.pad(canvas, ((0, 0), (_PAD, _PAD), (_PAD, _PAD), (0, 0)), mode="edge")
        for j in range(MAX_OBJECTS):  # soft shadows first, so they only darken the floor
            k = order[sl, j]
            rk = r[rows, k]
            sx, sy = cx[rows, k] + 0.35 * rk, cy[rows, k] + 0.6 * rk  # shadow centre
            top, left, dx, dy = window_coords(sx, sy, shadow_win, _PAD)
            q = np.sqrt((dx / (1.1 * rk[:, None, None])) ** 2 + (dy / (0.55 * rk[:, None, None])) ** 2)
            alpha = np.clip(1.0 - q, 0.0, 1.0) * 0.45 * active[rows, k][:, None, None]
            composite_windows(canvas, top, left, alpha, np.zeros((m, 3)))
        for j in range(MAX_OBJECTS):  # objects, far to near
            k = order[sl, j]
            rk = r[rows, k][:, None, None]
            top, left, dx, dy = window_coords(cx[rows, k], cy[rows, k], obj_win, _PAD)
            alpha, light, gloss = _shade(shape[rows, k], dx, dy, rk, metal[rows, k][:, None, None])
            alpha = alpha * active[rows, k][:, None, None]
            col = np.clip(colour[rows, k][:, None, None, :] * light[..., None] + gloss[..., None], 0.0, 1.0)
            composite_windows(canvas, top, left, alpha, col)
        canvas = canvas[:, _PAD:-_PAD, _PAD:-_PAD]
        out[sl] = to_uint8(canvas + rng.normal(0.0, 0.01, canvas.shape))
    return out, labels
