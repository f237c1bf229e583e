"""Measuring the batch planner's cost model on the running machine (:class:`~vptune.tasks.planner.CostModel`).

Each plan family is timed on the shapes it will price: lone-task passes (a, b, c), passes over all the tasks'
prompt lengths with their padding masked (the ``mask`` factor) and packed passes (``r``, ``v``), with one and
with ``max(batches)`` samples per task; what each mixed shape measured against its prediction becomes the
planner's starting correction there (``CostModel.factors``). Every point is timed ``repeats`` times in
interleaved sweeps (a load spike slows every point alike) and its fastest call kept (other load only ever adds
time). How far the fastest call of the first half of the repeats lies from that of the second half, relative
(the median over points), is the calibration's spread: the planner's ``margin``, so a noisy calibration can not
talk ``auto`` out of the padded pass.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch

from ..backbones import Backbone
from ..errors import ConfigError
from .planner import CostModel, Segment, bucket

log = logging.getLogger("vptune.planner")

MIN_MARGIN = 0.02
"""The smallest margin a calibration gives: gains under 2% are not worth a change of plan."""


def sweep(jobs: Sequence[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of every timed call of each job over ``repeats`` interleaved sweeps (after one warm-up sweep)."""
    times: list[list[float]] = [[] for _ in jobs]
    for index in range(repeats + 1):
        for k, job in enumerate(jobs):
            start = time.perf_counter()
            job()
            if index:
                times[k].append(time.perf_counter() - start)
    return times


def spread(times: Sequence[Sequence[float]]) -> float:
    """The relative noise of the fastest call: median over points of ``|min(first half) - min(second half)|``
    divided by the point's fastest call (0 with fewer than 2 calls per point)."""
    gaps = [abs(min(t[: len(t) // 2]) - min(t[len(t) // 2 :])) / min(t) for t in times if len(t) >= 2 and min(t) > 0]
    return statistics.median(gaps) if gaps else 0.0


def fit_cost(points: Sequence[tuple[int, int, float]], depth: int) -> CostModel:
    """Least-squares ``a, b, c >= 0`` (relative errors) from measured ``(samples, length, seconds)`` of passes.

    Coefficients the unconstrained fit makes negative are fixed at zero and the rest refitted.
    """
    if len(points) < 3:
        raise ConfigError(f"planner calibration: {len(points)} points measured; give at least 3")
    weight = torch.tensor([[1.0 / max(t, 1e-12)] for *_, t in points], dtype=torch.float64)  # relative errors
    rows = weight * torch.tensor([[depth * s * n, depth * s * n * n, 1.0] for s, n, _ in points], dtype=torch.float64)
    target = weight * torch.tensor([[t] for _, _, t in points], dtype=torch.float64)
    active = [0, 1, 2]
    while True:
        coef = torch.linalg.lstsq(rows[:, active], target).solution.flatten().tolist()
        if min(coef) >= 0 or len(active) == 1:
            break
        active.pop(min(range(len(coef)), key=coef.__getitem__))  # drop the most negative coefficient
    values = dict.fromkeys(range(3), 0.0) | {k: max(v, 0.0) for k, v in zip(active, coef)}
    if values[0] == values[1] == 0.0:  # degenerate (all time fixed): keep a tiny token cost
        values[0] = 1e-12
    return CostModel(a=values[0], b=values[1], c=values[2], depth=depth, source="calibrated")


def packed_terms(
    fitted: CostModel, groups: Sequence[Sequence[Segment]], times: Sequence[float], base_tokens: int
) -> tuple[float, float]:
    """``(r, v)`` through two measured packed passes with ``1`` and ``k`` samples per task (same tasks): the
    token factor from their difference, the per-segment cost from the smaller one."""
    tokens = [fitted.packed_cost([(s.count, base_tokens + s.length) for s in g]) - fitted.c for g in groups]
    r = min(max((times[1] - times[0]) / (tokens[1] - tokens[0]), 0.25), 4.0)
    v = max((times[0] - fitted.c - r * tokens[0]) / len(groups[0]), 1e-9)  # > 0: packed passes are priced
    return r, v


PassFn = Callable[[Sequence[Segment], bool], object]
"""``run(segments, packed)``: one backbone pass over ``segments`` (padded, or packed when ``packed``)."""


@torch.inference_mode()
def calibrate_passes(
    run: PassFn,
    tasks: Sequence[Segment],
    *,
    depth: int,
    base_tokens: int,
    batches: Sequence[int] = (1, 8),
    repeats: int = 4,
    packed: bool = False,
) -> CostModel:
    """Time real passes of the loaded tasks and fit :class:`CostModel` (logged at info level).

    Lone-task passes of the shortest, a middle and the longest prompt at every batch size give ``a, b, c``
    (:func:`fit_cost`); masked passes over up to 8 prompt lengths with one and ``max(batches)`` samples per task
    give ``mask``; with ``packed``, packed passes over up to 8 tasks with as many samples give ``r`` and ``v``
    (:func:`packed_terms`). ``margin`` is the timings' :func:`spread` (at least :data:`MIN_MARGIN`).

    Args:
        run: Runs one pass (see :data:`PassFn`).
        tasks: The tasks that may share a pass (``count`` ignored), at least two prompt lengths.
        depth: Blocks per pass.
        base_tokens: Prefix + patch tokens of one sample.
        batches: Samples per timed lone-task pass.
        repeats: Timed calls per point (at least 2 measure the spread).
        packed: Also price packed passes (over the packable ``tasks``).
    """
    start = time.perf_counter()
    ordered = sorted({t.length: t for t in tasks}.values(), key=lambda t: t.length)  # one task per length
    if len(ordered) < 2:
        raise ConfigError("planner calibration: the tasks have one prompt length; there is nothing to plan")
    picks = [ordered[k] for k in sorted({0, len(ordered) // 2, len(ordered) - 1})]
    singles = [[Segment(t.name, b, t.length)] for t in picks for b in batches]
    counts = (1, max(max(batches), 2))  # samples per task of the mixed passes
    spaced = [ordered[round(k * (len(ordered) - 1) / 7)] for k in range(8)] if len(ordered) > 8 else ordered
    masked = [[Segment(t.name, count, t.length) for t in dict.fromkeys(spaced)] for count in counts]
    packable = [t for t in tasks if t.packable][:8]
    packed = packed and len(packable) > 1
    groups = [[Segment(t.name, count, t.length) for t in packable] for count in counts] if packed else []
    jobs = [partial(run, p, False) for p in [*singles, *masked]] + [partial(run, g, True) for g in groups]
    times = sweep(jobs, repeats)  # interleaved: a load spike slows every point alike
    best = [min(t) for t in times]
    fitted = fit_cost([(p[0].count, base_tokens + p[0].length, t) for p, t in zip(singles, best)], depth)
    lone = [fitted.pass_cost(sum(s.count for s in m), base_tokens + m[-1].length) for m in masked]
    measured = best[len(singles) : len(singles) + len(masked)]
    mask = math.exp(statistics.mean(math.log(t / p) for t, p in zip(measured, lone)))  # geometric mean ratio
    packs = best[len(singles) + len(masked) :]
    r, v = packed_terms(fitted, groups, packs, base_tokens) if packed else (1.0, 0.0)
    margin = max(spread(times), MIN_MARGIN)
    fitted = CostModel(fitted.a, fitted.b, fitted.c, depth, v=v, r=r, mask=mask, margin=margin, source="calibrated")
    factors = [
        ("padded", m, t, fitted.pass_cost(sum(s.count for s in m), base_tokens + m[-1].length, True))
        for m, t in zip(masked, measured)
    ]
    factors += [
        ("varlen", g, t, fitted.packed_cost([(s.count, base_tokens + s.length) for s in g]))
        for g, t in zip(groups, packs)
    ]
    shapes = tuple((family, bucket(sum(s.count for s in g)), t / p) for family, g, t, p in factors)
    fitted = dataclasses.replace(fitted, factors=shapes)
    log.info(
        "planner calibrated on %d passes x %d in %.2f s: a=%.3g s/token/block, b=%.3g s/token^2/block, c=%.3g s/pass, "
        "mask=%.3g (masked pass factor), v=%.3g s/packed segment, r=%.3g (packed token cost), margin=%.3g, "
        "measured/predicted at the timed shapes %s",
        len(jobs),
        repeats,
        time.perf_counter() - start,
        fitted.a,
        fitted.b,
        fitted.c,
        fitted.mask,
        fitted.v,
        fitted.r,
        fitted.margin,
        ", ".join(f"{f}@{n}: {x:.3g}" for f, n, x in fitted.factors),
    )
    return fitted


@torch.inference_mode()
def calibrate_blocks(
    arch: Backbone,
    base_tokens: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batches: Sequence[int] = (1, 8),
    extra_tokens: Sequence[int] = (0, 32, 96),
    repeats: int = 4,
) -> CostModel:
    """Fit :class:`CostModel` from the backbone's blocks alone (when no two tasks differ in prompt length).

    Times ``arch.run_blocks`` on random tokens of ``base_tokens + extra`` length for every batch size and extra
    length; each point is the fastest of ``repeats`` calls, and ``margin`` their :func:`spread`.
    """
    start = time.perf_counter()
    dim, depth = arch.info.input_dim, arch.depth
    shapes = [(samples, base_tokens + extra) for samples in batches for extra in extra_tokens]
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    inputs = [torch.randn(s, n, dim, device=device, dtype=dtype) for s, n in shapes]  # (samples, N, D) each
    times = sweep([partial(lambda x: (arch.run_blocks(x), sync()), x) for x in inputs], repeats)
    fitted = fit_cost([(s, n, min(t)) for (s, n), t in zip(shapes, times)], depth)
    margin = max(spread(times), MIN_MARGIN)
    fitted = CostModel(fitted.a, fitted.b, fitted.c, depth, margin=margin, source="calibrated")
    log.info(
        "planner calibrated on %d block runs in %.2f s: a=%.3g s/token/block, b=%.3g s/token^2/block, c=%.3g s/pass, "
        "margin=%.3g",
        len(shapes),
        time.perf_counter() - start,
        fitted.a,
        fitted.b,
        fitted.c,
        fitted.margin,
    )
    return fitted
