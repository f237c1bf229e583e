"""FractalDB-style upstream pre-training data (after Kataoka et al. 2020): one IFS fractal per class.

An iterated function system (IFS) is a set of 2-4 affine maps ``w_i(x, y) = (a x + b y + e, c x + d y + f)``,
map ``i`` chosen with probability ``p_i`` proportional to ``|a d - b c|``; its attractor is rendered with
the chaos game. Class coefficients are drawn uniformly from [-1, 1] (maps that are not contractions are
redrawn) and a system is kept only when its points fill between ``MIN_FILL`` and ``MAX_FILL`` of a 32x32
grid (FractalDB's "filling rate" test), so every class is a visible fractal rather than a line or a dot.
The chaos game runs many short chains in lockstep for all images of a batch at once (vectorised over images
and chains). The fractals are purely synthetic and share nothing with the downstream tasks.
"""

from __future__ import annotations

import numpy as np

from vptune.data.offline._draw import chunks, random_colours, to_uint8

MAX_MAPS = 4
MIN_FILL = 0.12  # share of the 32x32 grid the attractor must cover
MAX_FILL = 0.85  # and not fill almost everything (a uniform square carries no shape)
JITTER = 0.1  # per-image relative jitter of each coefficient (+-10 %)
_CHAINS = 96  # parallel chaos-game chains per image
_STEPS = 52  # iterations per chain; the first _BURN_IN are discarded (3,072 points per image)
_BURN_IN = 20
_TEST_GRID = 32


def _chaos_points(params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Runs the chaos game for a batch of systems: _CHAINS chains per system, advanced in lockstep.

    Args:
        params: (B, MAX_MAPS, 7) rows ``(a, b, c, d, e, f, p)``; unused maps have ``p = 0``.
        rng: Random generator.

    Returns:
        ``(x, y)``: each (B, _CHAINS * (_STEPS - _BURN_IN)) float64 attractor points.
    """
    b = params.shape[0]
    cum = np.cumsum(params[:, :, 6], axis=1)
    cum = cum / cum[:, -1:]  # (B, M) cumulative probabilities
    x = rng.uniform(-1.0, 1.0, (b, _CHAINS))
    y = rng.uniform(-1.0, 1.0, (b, _CHAINS))
    u = rng.random((_STEPS, b, _CHAINS))
    k = np.zeros(u.shape, dtype=np.int64)  # (T, B, C) map index: number of cumulative bounds below u
    for j in range(MAX_MAPS - 1):
        k += u > cum[None, :, None, j]
    flat = np.arange(b)[None, :, None] * MAX_MAPS + k  # (T, B, C) index into the flattened (B, M) maps
    coef = [np.ascontiguousarray(params[:, :, j]).ravel() for j in range(6)]  # a..f, each (B * M,)
    xs = np.empty((b, _STEPS - _BURN_IN, _CHAINS))
    ys = np.empty((b, _STEPS - _BURN_IN, _CHAINS))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(_STEPS):
            a, bb, c, d, e, f = (cj.take(flat[t]) for cj in coef)  # each (B, C)
            x, y = a * x + bb * y + e, c * x + d * y + f
            if t >= _BURN_IN:
                xs[:, t - _BURN_IN] = x
                ys[:, t - _BURN_IN] = y
    return xs.reshape(b, -1), ys.reshape(b, -1)


def _rasterise(x: np.ndarray, y: np.ndarray, size: int, margin: float = 0.06) -> np.ndarray:
    """Point counts on a size x size grid after fitting each point set into the canvas.

    The robust bounding box (1st-99th percentile) is mapped into the canvas keeping the aspect ratio;
    non-finite and far-outlying points are dropped.

    Args:
        x: (B, P) point coordinates.
        y: (B, P) point coordinates.
        size: Grid side length.
        margin: Empty border, canvas units.

    Returns:
        (B, size, size) float64 counts.
    """
    b = x.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.nan_to_num(x, nan=np.inf)  # diverged points (rare after jitter) become +-inf and get dropped
        y = np.nan_to_num(y, nan=np.inf)
        lo_x, hi_x = np.percentile(x, [1, 99], axis=1, method="nearest")
        lo_y, hi_y = np.percentile(y, [1, 99], axis=1, method="nearest")
        span = np.maximum(np.maximum(hi_x - lo_x, hi_y - lo_y), 1e-12)[:, None]
        scale = (1.0 - 2 * margin) * size / span
        px = (x - ((lo_x + hi_x) / 2)[:, None]) * scale + size / 2
        py = (y - ((lo_y + hi_y) / 2)[:, None]) * scale + size / 2
        ok = np.isfinite(px) & np.isfinite(py) & (px >= 0) & (px < size) & (py >= 0) & (py < size)
    ix = np.where(ok, px, 0).astype(np.int64)
    iy = np.where(ok, py, 0).astype(np.int64)
    flat = (np.arange(b)[:, None] * size + iy) * size + ix
    counts = np.bincount(flat[ok], minlength=b * size * size)
    return counts.reshape(b, size, size).astype(np.float64)


def _random_systems(rng: np.random.Generator, b: int) -> np.ndarray:
    """Draws ``b`` candidate systems: (B, MAX_MAPS, 7) with 2-4 active maps, ``p`` proportional to |det|.

    Coefficients are uniform in [-1, 1]; maps whose linear part is not a contraction (largest singular value
    >= 1) are redrawn, so that every system has an attractor and the chaos game converges quickly.
    """
    pool = rng.uniform(-1.0, 1.0, (b * MAX_MAPS * 4, 6))
    lin = pool[:, :4].reshape(-1, 2, 2)
    # largest singular value of [[a, b], [c, d]] from the closed form of the 2x2 SVD
    sq = (lin**2).sum(axis=(1, 2))
    det = lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]
    sigma_max = np.sqrt((sq + np.sqrt(np.maximum(sq**2 - 4 * det**2, 0.0))) / 2)
    maps = pool[sigma_max < 1.0]
    if maps.shape[0] < b * MAX_MAPS:  # practically impossible (about 40 % of maps are contractive)
        raise RuntimeError("not enough contractive maps drawn")
    params = np.zeros((b, MAX_MAPS, 7))
    params[:, :, :6] = maps[: b * MAX_MAPS].reshape(b, MAX_MAPS, 6)
    n_maps = rng.integers(2, MAX_MAPS + 1, b)
    det = np.abs(params[:, :, 0] * params[:, :, 3] - params[:, :, 1] * params[:, :, 2])
    params[:, :, 6] = det * (np.arange(MAX_MAPS)[None, :] < n_maps[:, None])
    params[:, :, 6] /= np.maximum(params[:, :, 6].sum(axis=1, keepdims=True), 1e-12)
    return params


def fractal_class_params(num_classes: int, seed: int) -> list[np.ndarray]:
    """Draws one accepted IFS per class.

    Candidates are tested in batches and accepted in draw order, so the result for ``num_classes = k`` is a
    prefix of the result for any larger ``num_classes`` with the same seed.

    Args:
        num_classes: Number of classes (systems) to return.
        seed: Seed for the parameter search.

    Returns:
        ``num_classes`` arrays of shape (k, 7), 2 <= k <= 4, rows ``(a, b, c, d, e, f, p)`` with the
        probabilities ``p`` summing to 1.
    """
    rng = np.random.default_rng([seed, 0x1F5])
    accepted: list[np.ndarray] = []
    while len(accepted) < num_classes:
        cand = _random_systems(rng, 64)
        fill = (_rasterise(*_chaos_points(cand, rng), _TEST_GRID) > 0).mean(axis=(1, 2))
        for params, f in zip(cand, fill, strict=True):
            if MIN_FILL <= f <= MAX_FILL and len(accepted) < num_classes:
                accepted.append(params[params[:, 6] > 0].copy())
    return accepted


def render_fractals(
    num_classes: int = 100, per_class: int = 100, image_size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Renders a FractalDB-style labelled image set.

    Per image: every coefficient of the class IFS is jittered by up to +-10 %, the chaos game is run and the
    point density is drawn in a random bright colour on either a near-black background (half of the images)
    or a random darker colour, and the image is flipped horizontally with probability 1/2.

    Args:
        num_classes: Number of fractal classes.
        per_class: Images per class.
        image_size: Output side length.
        seed: Seed for class parameters and per-image variation.

    Returns:
        ``(images, labels)``: uint8 (num_classes * per_class, S, S, 3) and int64 labels, class-major order.
    """
    classes = fractal_class_params(num_classes, seed)
    n = num_classes * per_class
    base = np.zeros((num_classes, MAX_MAPS, 7))
    for i, p in enumerate(classes):
        base[i, : len(p)] = p
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    rng = np.random.default_rng([seed, 0x1F6])
    params = base[labels] * (1.0 + rng.uniform(-JITTER, JITTER, (n, MAX_MAPS, 7)))  # (n, M, 7)
    fg = random_colours(rng, n, sat=(0.3, 1.0), val=(0.75, 1.0))  # (n, 3)
    bg = np.where(
        (rng.random(n) < 0.5)[:, None],
        random_colours(rng, n, sat=(0.0, 1.0), val=(0.0, 0.12)),
        random_colours(rng, n, sat=(0.0, 1.0), val=(0.1, 0.45)),
    )
    flip = rng.random(n) < 0.5
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for sl in chunks(n, 1024):
        counts = _rasterise(*_chaos_points(params[sl], rng), image_size)  # (m, S, S)
        t = 1.0 - np.exp(-counts / 1.5)  # point density -> coverage
        t = np.where(flip[sl, None, None], t[:, :, ::-1], t)
        rgb = bg[sl, None, None, :] + (fg - bg)[sl, None, None, :] * t[..., None]
        out[sl] = to_uint8(rgb)
    return out, labels
