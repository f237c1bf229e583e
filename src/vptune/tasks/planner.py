"""How a mixed-task batch runs: one padded pass, passes per prompt-length bucket, per-task passes, or a mix.

A mixed batch pads every sample's prompt block to the batch's longest prompt, and attention costs grow with the
square of the sequence, so one padded pass can cost more than running the tasks one after the other. The
planner prices every way of splitting the batch's tasks into backbone passes with a cost model

    pass cost = c + depth * samples * (a * N + b * N^2)        N = prefix + patches + the pass's prompt width

(``a``: per-token work of the Linear layers and norms, ``b``: attention, ``c``: the fixed cost of a pass; a pass
that masks padding, i.e. holds several prompt lengths, costs ``mask`` times that) and picks the cheapest. Only
splits into runs of tasks sorted by prompt length can be optimal (adding a shorter task to a pass never widens
it), so the exact optimum is a small dynamic programme over the sorted tasks.

A packed pass without any padding (:mod:`.varlen`) is priced as its real tokens plus ``v`` per task segment.

A composition that recurs (the same prompt lengths, about the same samples per task) is *raced*
(:mod:`.race`): its shortlisted plans each run a couple of times and the measured fastest is kept, so a model a few
tens of per-cent off on a loaded machine does not cost throughput where a server spends it, on the batches it
sees again and again. The model decides the first batch of a composition and the shortlist.

Noisy calibration must never make ``auto`` slower than one padded pass, so ``auto`` keeps the padded pass unless
another plan is predicted cheaper by more than the calibration's measured spread (``margin``). It also learns
online: the measured seconds of every batch it runs update a per-(plan family, batch size bucket) correction of
the predictions (the median of measured / predicted over its latest batches, logged), and on the
4th, 8th and then every ``explore_every``-th batch of a bucket it runs the runner-up plan once where that is priced
within ``explore_band`` of the choice, so a
mis-priced plan gets measured too. The model is calibrated on the running machine by timing real passes of the
loaded tasks (:mod:`.calibrate`) or given; both are logged on ``vptune.planner``. Every plan computes the same
logits (tests check each task's own Predictor within 1e-4 for every plan); only the speed differs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from .race import Race, Shape

log = logging.getLogger("vptune.planner")

PLANS = ("auto", "padded", "buckets", "per-task", "varlen")
"""auto: the cost model's cheapest split; padded: one pass padded to the longest prompt (the old behaviour);
buckets: one pass per power-of-two prompt-length bucket; per-task: one pass per task; varlen: one pass without
padding (:mod:`.varlen`; where the backbone and every task allow it, else auto)."""

FAMILIES = ("padded", "split", "varlen")
"""What online correction tells apart: one padded pass, several padded passes, one packed pass."""


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
        mask: Cost of a pass over several prompt lengths (padding hidden by a key mask) relative to a lone
            task's pass of the same shape.
        margin: Relative spread of the calibration's timings: ``auto`` leaves the one padded pass only for a plan
            predicted cheaper by more than this.
        factors: ``(family, samples bucket, measured / predicted)`` at the shapes calibration timed: the
            planner's starting corrections (:meth:`BatchPlanner.corrected`), so those shapes are priced as measured.
        source: Where the figures come from (``calibrated``, ``given``, ``flops``).
    """

    a: float
    b: float
    c: float
    depth: int
    v: float = 0.0
    r: float = 1.0
    mask: float = 1.0
    margin: float = 0.0
    factors: tuple[tuple[str, int, float], ...] = ()
    source: str = "given"

    def __post_init__(self) -> None:
        if min(self.a, self.b, self.c, self.v, self.margin) < 0 or self.depth < 1 or self.a + self.b == 0:
            raise ConfigError(
                f"planner cost model: a={self.a}, b={self.b}, c={self.c}, v={self.v}, margin={self.margin}, "
                f"depth={self.depth}; use a, b, c, v, margin >= 0 (a or b > 0) and depth >= 1"
            )
        if self.r <= 0 or self.mask <= 0 or any(f[2] <= 0 or f[0] not in FAMILIES for f in self.factors):
            raise ConfigError(
                f"planner cost model: r={self.r}, mask={self.mask}, factors={self.factors}; use r > 0, mask > 0 "
                f"and factors > 0 of the families {', '.join(FAMILIES)}"
            )

    def coefficients(self) -> dict[str, float]:
        """The fitted numbers (a, b, c, v, r, mask, margin), as benchmarks and logs report them."""
        return {k: getattr(self, k) for k in ("a", "b", "c", "v", "r", "mask", "margin")}

    def pass_cost(self, samples: int, length: int, masked: bool = False) -> float:
        """Predicted seconds of one pass over ``samples`` sequences of ``length`` tokens (``masked``: the pass
        holds several prompt lengths and hides the padding)."""
        cost = self.c + self.depth * samples * (self.a * length + self.b * length * length)
        return cost * self.mask if masked else cost

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
    packable: bool = True  # the task can run in a packed (varlen) pass (not per-sample row edits: LoRA, ...)


@dataclass(frozen=True)
class Plan:
    """Backbone passes for a batch: each pass is a tuple of task segments padded to its longest prompt."""

    kind: str
    passes: tuple[tuple[Segment, ...], ...]
    cost: float
    race: tuple | None = field(default=None, compare=False)  # the composition whose race chose it

    @property
    def shape(self) -> Shape:
        """(packed, tasks per pass): the plan independent of task names and sample counts (:mod:`.race`)."""
        return self.kind == "varlen", tuple(len(p) for p in self.passes)

    @property
    def family(self) -> str:
        """``varlen`` (one packed pass), ``padded`` (one padded pass) or ``split`` (several passes)."""
        return "varlen" if self.kind == "varlen" else "padded" if len(self.passes) == 1 else "split"

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
        cost: The cost model (see :mod:`.calibrate`).
        mode: One of :data:`PLANS`.
        packable: The backbone supports the packed pass (:func:`~vptune.tasks.varlen.packable`).
        learn: ``auto`` corrects its predictions by the measured seconds of the batches it runs
            (:meth:`observe`) and explores the runner-up now and then.
        explore_every: On the 4th, 8th and every this many ``auto`` batches of a batch-size bucket, run the
            runner-up plan once.
        explore_band: ... only where its corrected price is within this factor of the choice's.
        race_after: Race a composition (:mod:`.race`) from the time it comes this many times (0: never; ``auto``
            with ``learn`` only): a race costs a few slower batches, worth it only where a composition recurs.
        race_band: Shortlist the plans whose corrected price is within this factor of the cheapest.
        race_trials, race_recheck: See :class:`~vptune.tasks.race.Race`.
        max_races: Compositions remembered (least recently seen forgotten first).
    """

    base_tokens: int
    cost: CostModel
    mode: str = "auto"
    packable: bool = False
    chosen: dict[str, int] = field(default_factory=dict)  # plan kind -> batches run with it (auto counts its own)
    learn: bool = True
    explore_every: int = 16
    explore_band: float = 1.3
    window: int = 5  # the correction is the median of this many latest measurements
    correction: dict[tuple[str, int], float] = field(default_factory=dict)  # (family, samples bucket) -> factor
    observed: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # latest log(measured / predicted)
    batches: dict[int, int] = field(default_factory=dict)  # samples bucket -> auto batches planned
    race_after: int = 4
    race_band: float = 1.6
    race_trials: int = 3
    race_recheck: int = 16
    max_races: int = 256
    races: OrderedDict[tuple, Race | int] = field(default_factory=OrderedDict)  # composition -> race or times seen

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if (
            min(self.race_after, self.race_recheck) < 0
            or self.race_trials < 1
            or self.race_band < 1
            or self.max_races < 1
        ):
            raise ConfigError(
                f"planner racing: race_after={self.race_after}, race_trials={self.race_trials}, "
                f"race_recheck={self.race_recheck}, race_band={self.race_band}, max_races={self.max_races}; use "
                "race_after >= 0 (0: no racing), race_trials >= 1, race_recheck >= 0, race_band >= 1, max_races >= 1"
            )
        for family, size, factor in self.cost.factors:  # calibrated shapes: priced as measured
            self.correction.setdefault((family, size), factor)
            self.observed.setdefault((family, size), [math.log(factor)])  # calibration's timing: one measurement

    def recalibrated(self, cost: CostModel) -> BatchPlanner:
        """A planner with this one's settings and ``cost``, and nothing learnt (corrections, races, counts)."""
        fresh = {"chosen": {}, "correction": {}, "observed": {}, "batches": {}, "races": OrderedDict()}
        return dataclasses.replace(self, cost=cost, **fresh)

    def price(self, passes: Sequence[Sequence[Segment]]) -> float:
        """Predicted seconds of running ``passes`` (a pass over several prompt lengths is masked)."""
        return sum(self._pass(p) for p in passes)

    def _pass(self, segments: Sequence[Segment]) -> float:
        masked = len({s.length for s in segments}) > 1
        return self.cost.pass_cost(
            sum(s.count for s in segments), self.base_tokens + max(s.length for s in segments), masked
        )

    def packed(self, segments: Sequence[Segment], race: tuple | None = None) -> Plan:
        """One packed (varlen) pass over ``segments``, priced by the cost model's packed term."""
        cost = self.cost.packed_cost([(s.count, self.base_tokens + s.length) for s in segments])
        return Plan("varlen", (tuple(segments),), cost, race)

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
            plans["varlen"] = self.packed(ordered)
        return plans

    def optimal(self, ordered: Sequence[Segment]) -> Plan:
        """The cheapest split of length-sorted segments into contiguous runs (dynamic programme, O(T^2))."""
        n = len(ordered)
        best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of the first j segments
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j - 1, -1, -1):  # the last pass holds segments i..j-1; its width is ordered[j-1]'s
                total = best[i] + self._pass(ordered[i:j])
                if total < best[j]:
                    best[j], cut[j] = total, i
        passes, j = [], n
        while j > 0:
            passes.append(tuple(ordered[cut[j] : j]))
            j = cut[j]
        return Plan("auto", tuple(reversed(passes)), best[n])

    def corrected(self, plan: Plan) -> float:
        """The plan's predicted seconds times the learnt correction of its family at its batch size."""
        samples = sum(s.count for p in plan.passes for s in p)
        return plan.cost * self.correction.get((plan.family, bucket(samples)), 1.0)

    def choose(self, segments: Sequence[Segment]) -> tuple[Plan, Plan | None]:
        """``auto``'s choice and the runner-up: the padded pass unless another plan's corrected price beats its
        price by more than the cost model's ``margin``."""
        ordered = sorted(segments, key=lambda s: s.length)
        padded = Plan("auto", (tuple(ordered),), self.price([ordered]))
        others = [self.optimal(ordered)]
        if self.cost.v > 0 and self.packable and all(s.packable for s in segments):  # a priced packed pass
            others.append(self.packed(segments))
        others = sorted((p for p in others if p.family != "padded"), key=self.corrected)
        win = bool(others) and self.corrected(others[0]) * (1 + self.cost.margin) < self.corrected(padded)
        chosen = others[0] if win else padded
        ranked = sorted([padded, *others], key=self.corrected)
        return chosen, next((p for p in ranked if p is not chosen), None)

    @staticmethod
    def composition(segments: Sequence[Segment]) -> tuple:
        """What a race is keyed by: the sorted (prompt length, samples bucket, packable) of the tasks."""
        return tuple(sorted((s.length, bucket(s.count), s.packable) for s in segments))

    def build(self, shape: Shape, ordered: Sequence[Segment], race: tuple | None = None) -> Plan:
        """The plan of ``shape`` over length-sorted ``ordered`` segments, priced by the cost model (kind
        ``varlen`` for the packed pass, else ``auto``)."""
        packed, sizes = shape
        if packed:
            return self.packed(ordered, race)
        passes, start = [], 0
        for size in sizes:
            passes.append(tuple(ordered[start : start + size]))
            start += size
        return Plan("auto", tuple(passes), self.price(passes), race)

    def start_race(self, ordered: Sequence[Segment]) -> Race:
        """A race over the plans whose corrected price is within ``race_band`` of the cheapest (the padded pass,
        per-task passes, buckets, the packed pass where the backbone and every task allow it, the optimal split),
        the model's choice first."""
        first = self.choose(ordered)[0]
        plans = self.candidates(ordered)
        plans["optimal"] = plans.pop("auto")
        cheapest = min(self.corrected(p) for p in [first, *plans.values()])
        kinds: dict[Shape, str] = {}
        for kind, p in plans.items():  # a shape is named after its first kind in this order
            kinds.setdefault(p.shape, kind)
        shortlist = [first.shape] + [
            shape for shape, kind in kinds.items() if self.corrected(plans[kind]) <= self.race_band * cheapest
        ]
        shapes = list(dict.fromkeys(shortlist))
        return Race(shapes, {s: kinds[s] for s in shapes}, trials=self.race_trials, recheck=self.race_recheck)

    def _raced(self, segments: Sequence[Segment]) -> Plan | None:
        """The plan the composition's race runs now, or None while it is new (the model decides)."""
        key = self.composition(segments)
        entry = self.races.pop(key, 0)
        if isinstance(entry, int) and entry + 1 < self.race_after:
            self._remember(key, entry + 1)
            return None
        ordered = sorted(segments, key=lambda s: s.length)
        race = entry if isinstance(entry, Race) else self.start_race(ordered)
        self._remember(key, race)
        return self.build(race.next(), ordered, key)

    def _remember(self, key: tuple, entry: Race | int) -> None:
        """Store a composition's race or times seen as the most recent; forget the oldest beyond ``max_races``."""
        self.races[key] = entry
        while len(self.races) > self.max_races:
            self.races.popitem(last=False)

    def plan(self, segments: Sequence[Segment]) -> Plan:
        """The plan of this planner's mode for one batch (logged at debug level)."""
        if len({s.length for s in segments}) <= 1 or len(segments) == 1:
            chosen = Plan("padded", (tuple(segments),), self.price([segments]))  # nothing to gain from a split
        elif self.mode == "auto" and self.learn and self.race_after > 0 and (raced := self._raced(segments)):
            chosen = raced
        elif self.mode == "auto":
            chosen, runner_up = self.choose(segments)
            if self.learn and runner_up is not None:
                size = bucket(sum(s.count for s in segments))
                self.batches[size] = self.batches.get(size, 0) + 1
                n = self.batches[size]
                explore = self.explore_every > 0 and (n in (4, 8) or n % self.explore_every == 0)
                if explore and self.corrected(runner_up) <= self.explore_band * self.corrected(chosen):
                    chosen = runner_up  # measured once now and then, so a mis-priced plan can win back
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

    @property
    def observing(self) -> bool:
        """Whether :meth:`observe` wants the seconds of the batches run (``auto`` with ``learn``)."""
        return self.learn and self.mode == "auto"

    def observe(self, plan: Plan, seconds: float) -> None:
        """Fold one batch's measured ``seconds`` under ``plan`` into its family's correction (``auto`` only).

        The correction is the median of measured / predicted over the latest ``window`` measurements (geometric
        mean of the middle two for an even count), so one load spike during a batch does not move it; each ratio
        is clipped to [1/4, 4]. Changes of more than 10% are logged at info level.
        """
        lengths = {s.length for p in plan.passes for s in p}
        if not self.observing or len(lengths) < 2:  # one prompt length: no choice was made
            return
        race = self.races.get(plan.race) if plan.race is not None else None
        if isinstance(race, Race) and (winner := race.record(plan.shape, seconds)) is not None:
            log.info(
                "planner race of %d tasks, %d samples: %s runs (%s)",
                len(lengths),
                sum(s.count for p in plan.passes for s in p),
                race.kinds[winner],
                race.summary(),
            )
        if plan.cost <= 0:
            return
        samples = sum(s.count for p in plan.passes for s in p)
        key = (plan.family, bucket(samples))
        ratio = min(max(seconds / plan.cost, 0.25), 4.0)
        recent = [*self.observed.get(key, []), math.log(ratio)][-self.window :]
        old, new = self.correction.get(key), math.exp(statistics.median(recent))
        self.correction[key], self.observed[key] = new, recent
        if old is None or abs(new / old - 1) > 0.1:
            log.info(
                "planner correction %s at %d samples: %.3g x predicted (measured %.3g ms, predicted %.3g ms)",
                key[0],
                key[1],
                new,
                1000 * seconds,
                1000 * plan.cost,
            )
