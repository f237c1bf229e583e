"""How a mixed-task batch runs: one padded pass, passes per prompt-length bucket, per-task passes, or a mix.

A mixed batch pads every sample's prompt block to the batch's longest prompt, and attention costs grow with the
square of the sequence, so one padded pass can cost more than running the tasks one after the other. The
planner prices every way of splitting the batch's tasks into backbone passes with a cost model

    pass cost = c + depth * samples * (a * N + b * N^2)        N = prefix + patches + the pass's prompt width

(``a``: per-token work of the Linear layers and norms, ``b``: attention, ``c``: the fixed cost of a pass) and
picks the cheapest. Only splits into runs of tasks sorted by prompt length can be optimal (adding a shorter task
to a pass never widens it), so the exact optimum is a small dynamic programme over the sorted tasks.

A packed pass without any padding (:mod:`.varlen`) is priced as its real tokens plus ``v`` per task segment
and chosen by ``auto`` when cheaper. The model is calibrated on the running machine by timing a few real passes
of the loaded tasks (:func:`calibrate_passes`; the blocks alone, :func:`calibrate_blocks`, when the tasks have a
single prompt length) or given; both are logged on ``vptune.planner``. Every plan computes the same logits
(tests check each task's own Predictor within 1e-4 for every plan); only the speed differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from ..backbones import Backbone
from ..errors import ConfigError

log = logging.getLogger("vptune.planner")

PLANS = ("auto", "padded", "buckets", "per-task", "varlen")
"""auto: the cost model's cheapest split; padded: one pass padded to the longest prompt (the old behaviour);
buckets: one pass per power-of-two prompt-length bucket; per-task: one pass per task; varlen: one pass without
padding (:mod:`.varlen`; where the backbone and every task allow it, else auto)."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`PLANS` (raises :class:`~vptune.errors.ConfigError` naming them)."""
    if mode not in PLANS:
        raise ConfigError(f"planner mode '{mode}' is unknown; choose one of {', '.join(PLANS)}")
    return mode


@dataclass(frozen=True)
class CostModel:
    """Seconds of one backbone pass: ``c + depth * samples * (a * N + b * N^2)`` for sequence length N.

    Attributes:
        a: Seconds per token per block.
        b: Seconds per token squared per block (per sample: attention).
        c: Seconds per pass (dispatch, embedding, final norm, pooling, heads).
        depth: Blocks per pass.
        v: Seconds per task segment of a packed (varlen) pass on top of its tokens (one attention call per
            segment and block); 0: packed passes are not priced (auto never picks them).
        r: Token cost of a packed pass relative to a padded one (packing copies the tokens at every block).
        source: Where the figures come from (``calibrated``, ``given``, ``flops``).
    """

    a: float
    b: float
    c: float
    depth: int
    v: float = 0.0
    r: float = 1.0
    source: str = "given"

    def __post_init__(self) -> None:
        if min(self.a, self.b, self.c, self.v) < 0 or self.depth < 1 or self.a + self.b == 0 or self.r <= 0:
            raise ConfigError(
                f"planner cost model: a={self.a}, b={self.b}, c={self.c}, v={self.v}, r={self.r}, depth={self.depth}; "
                "use a, b, c, v >= 0 (a or b > 0), r > 0 and depth >= 1"
            )

    def pass_cost(self, samples: int, length: int) -> float:
        """Predicted seconds of one pass over ``samples`` sequences of ``length`` tokens."""
        return self.c + self.depth * samples * (self.a * length + self.b * length * length)

    def packed_cost(self, segments: Sequence[tuple[int, int]]) -> float:
        """Predicted seconds of one packed pass over ``(samples, length)`` segments (no padding)."""
        tokens = sum(s * (self.a * n + self.b * n * n) for s, n in segments)
        return self.c + self.r * self.depth * tokens + self.v * len(segments)

    @classmethod
    def from_flops(cls, embed_dim: int, depth: int, mlp_ratio: float = 4.0) -> CostModel:
        """A machine-independent guess from multiply-adds (no fixed cost per pass): used when nothing is
        calibrated or given, e.g. in tests."""
        a = (4 + 2 * mlp_ratio) * embed_dim * embed_dim  # qkv, proj, fc1, fc2 per token
        return cls(a=float(a), b=2.0 * embed_dim, c=0.0, depth=depth, source="flops")


@dataclass(frozen=True)
class Segment:
    """The samples of one task in a batch: ``count`` samples with ``length`` prompt tokens."""

    name: str
    count: int
    length: int
    packable: bool = True  # the task can run in a packed (varlen) pass (not LoRA: its hooks index rows)


@dataclass(frozen=True)
class Plan:
    """Backbone passes for a batch: each pass is a tuple of task segments padded to its longest prompt."""

    kind: str
    passes: tuple[tuple[Segment, ...], ...]
    cost: float

    def describe(self) -> str:
        """One line, e.g. ``auto: [t0,t1 | P=8] [t2 | P=50] (1.2 ms predicted)`` (varlen: ``| packed, longest 50``)."""
        width = "packed, longest " if self.kind == "varlen" else "P="
        parts = [f"[{','.join(s.name for s in p)} | {width}{max(s.length for s in p)}]" for p in self.passes]
        return f"{self.kind}: {' '.join(parts)} ({1000 * self.cost:.3g} ms predicted)"


def bucket(length: int) -> int:
    """The power-of-two bucket of a prompt length (0 stays 0): 1, 2, 3-4, 5-8, ..."""
    return 0 if length <= 0 else 1 << (length - 1).bit_length()


@dataclass
class BatchPlanner:
    """Chooses the passes of each mixed batch.

    Args:
        base_tokens: Tokens of a sample without prompts (prefix + patches).
        cost: The cost model (see :func:`calibrate`).
        mode: One of :data:`PLANS`.
        packable: The backbone supports the packed pass (:func:`~vptune.tasks.varlen.packable`).
    """

    base_tokens: int
    cost: CostModel
    mode: str = "auto"
    packable: bool = False
    chosen: dict[str, int] = field(default_factory=dict)  # plan kind -> batches run with it (auto counts its own)

    def __post_init__(self) -> None:
        check_mode(self.mode)

    def price(self, passes: Sequence[Sequence[Segment]]) -> float:
        """Predicted seconds of running ``passes``."""
        return sum(
            self.cost.pass_cost(sum(s.count for s in p), self.base_tokens + max(s.length for s in p)) for p in passes
        )

    def candidates(self, segments: Sequence[Segment]) -> dict[str, Plan]:
        """Every plan kind for ``segments`` (``auto`` is the cheapest split under the cost model)."""
        ordered = sorted(segments, key=lambda s: s.length)
        fixed: dict[str, list[list[Segment]]] = {"padded": [list(ordered)], "per-task": [[s] for s in ordered]}
        buckets: dict[int, list[Segment]] = {}
        for s in ordered:
            buckets.setdefault(bucket(s.length), []).append(s)
        fixed["buckets"] = list(buckets.values())
        plans = {k: Plan(k, tuple(tuple(p) for p in v), self.price(v)) for k, v in fixed.items()}
        plans["auto"] = self.optimal(ordered)
        if self.packable and all(s.packable for s in ordered):
            cost = self.cost.packed_cost([(s.count, self.base_tokens + s.length) for s in ordered])
            plans["varlen"] = Plan("varlen", (tuple(ordered),), cost)
        return plans

    def optimal(self, ordered: Sequence[Segment]) -> Plan:
        """The cheapest split of length-sorted segments into contiguous runs (dynamic programme, O(T^2))."""
        n = len(ordered)
        best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of the first j segments
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            samples = 0
            for i in range(j - 1, -1, -1):  # the last pass holds segments i..j-1; its width is ordered[j-1]'s
                samples += ordered[i].count
                total = best[i] + self.cost.pass_cost(samples, self.base_tokens + ordered[j - 1].length)
                if total < best[j]:
                    best[j], cut[j] = total, i
        passes, j = [], n
        while j > 0:
            passes.append(tuple(ordered[cut[j] : j]))
            j = cut[j]
        return Plan("auto", tuple(reversed(passes)), best[n])

    def plan(self, segments: Sequence[Segment]) -> Plan:
        """The plan of this planner's mode for one batch (logged at debug level)."""
        if len({s.length for s in segments}) <= 1 or len(segments) == 1:
            chosen = Plan("padded", (tuple(segments),), self.price([segments]))  # nothing to gain from a split
        elif self.mode == "auto":
            chosen = self.optimal(sorted(segments, key=lambda s: s.length))
            if self.cost.v > 0 and self.packable and all(s.packable for s in segments):  # a priced packed pass
                packed = self.cost.packed_cost([(s.count, self.base_tokens + s.length) for s in segments])
                chosen = Plan("varlen", (tuple(segments),), packed) if packed < chosen.cost else chosen
        else:
            plans = self.candidates(segments)
            chosen = plans.get(self.mode, plans["auto"])  # varlen where it can not run: auto
        key = f"{self.mode}:{chosen.kind if chosen.kind == 'varlen' else f'{len(chosen.passes)}-pass'}"
        self.chosen[key] = self.chosen.get(key, 0) + 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch of %d samples, %d tasks -> %s", sum(s.count for s in segments), len(segments), chosen.describe()
            )
        return chosen


def _time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest seconds of ``fn()`` over ``repeats`` calls after one warm-up call (other load only adds time)."""
    return _sweep([fn], repeats)[0]


def _sweep(jobs: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest seconds of each job over ``repeats`` interleaved sweeps (after one warm-up sweep)."""
    best = [float("inf")] * len(jobs)
    for sweep in range(repeats + 1):
        for k, job in enumerate(jobs):
            start = time.perf_counter()
            job()
            if sweep:
                best[k] = min(best[k], time.perf_counter() - start)
    return best


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
    repeats: int = 5,
    packed: bool = False,
) -> CostModel:
    """Time real passes of the loaded tasks and fit :class:`CostModel` (logged at info level).

    Single-task passes of the shortest, a middle and the longest prompt at every batch size give ``a, b, c``
    (:func:`fit_cost`); with ``packed``, packed passes over up to 8 tasks with one and with ``max(batches)``
    samples each give the packed token factor ``r`` and the cost ``v`` per segment. Each point is its fastest
    call over ``repeats`` interleaved sweeps of all points.

    Args:
        run: Runs one pass (see :data:`PassFn`).
        tasks: The tasks that may share a pass (``count`` ignored), at least two prompt lengths.
        depth: Blocks per pass.
        base_tokens: Prefix + patch tokens of one sample.
        batches: Samples per timed pass.
        repeats: Timed calls per point.
        packed: Also price packed passes (over the packable ``tasks``).
    """
    start = time.perf_counter()
    ordered = sorted({t.length: t for t in tasks}.values(), key=lambda t: t.length)  # one task per length
    if len(ordered) < 2:
        raise ConfigError("planner calibration: the tasks have one prompt length; there is nothing to plan")
    picks = [ordered[k] for k in sorted({0, len(ordered) // 2, len(ordered) - 1})]
    singles = [[Segment(t.name, b, t.length)] for t in picks for b in batches]
    packable = [t for t in tasks if t.packable][:8]
    packed = packed and len(packable) > 1
    counts = (1, max(max(batches), 2)) if packed else ()  # packed passes with 1 and max(batches) samples per task
    groups = [[Segment(t.name, count, t.length) for t in packable] for count in counts]
    jobs = [partial(run, p, False) for p in singles] + [partial(run, g, True) for g in groups]
    times = _sweep(jobs, repeats)  # interleaved: a load spike slows every point alike
    fitted = fit_cost([(p[0].count, base_tokens + p[0].length, t) for p, t in zip(singles, times)], depth)
    v, r = 0.0, 1.0
    if packed:
        times = times[len(singles) :]
        tokens = [fitted.packed_cost([(s.count, base_tokens + s.length) for s in g]) - fitted.c for g in groups]
        r = max((times[1] - times[0]) / (tokens[1] - tokens[0]), 1e-3)
        v = max((times[0] - fitted.c - r * tokens[0]) / len(packable), 1e-9)  # > 0: packed passes are priced
    fitted = CostModel(fitted.a, fitted.b, fitted.c, depth, v=v, r=r, source="calibrated")
    log.info(
        "planner calibrated on %d passes in %.2f s: a=%.3g s/token/block, b=%.3g s/token^2/block, c=%.3g s/pass, "
        "v=%.3g s/packed segment, r=%.3g (packed token cost)",
        len(jobs),
        time.perf_counter() - start,
        fitted.a,
        fitted.b,
        fitted.c,
        fitted.v,
        fitted.r,
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
    repeats: int = 3,
) -> CostModel:
    """Fit :class:`CostModel` from the backbone's blocks alone (when no two tasks differ in prompt length).

    Times ``arch.run_blocks`` on random tokens of ``base_tokens + extra`` length for every batch size and extra
    length; each point is the fastest of ``repeats`` calls.
    """
    start = time.perf_counter()
    dim, depth = arch.info.input_dim, arch.depth
    points = []
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for samples in batches:
        for extra in extra_tokens:
            x = torch.randn(samples, base_tokens + extra, dim, device=device, dtype=dtype)  # (samples, N, D)
            points.append((samples, base_tokens + extra, _time(lambda x=x: (arch.run_blocks(x), sync()), repeats)))
    fitted = fit_cost(points, depth)
    log.info(
        "planner calibrated on %d block runs in %.2f s: a=%.3g s/token/block, b=%.3g s/token^2/block, c=%.3g s/pass",
        len(points),
        time.perf_counter() - start,
        fitted.a,
        fitted.b,
        fitted.c,
    )
    return fitted
