"""Racing the plans of a recurring batch composition: measured seconds decide, the cost model only shortlists.

A calibrated cost model is a few per-cent off at best and, on a loaded machine, tens of per-cent off for one plan
family and not another (docs/serving.md measured per-task passes at 1.41x their price and a packed pass at 0.85x
in the same run). A server sees the same batch compositions again and again (the same tasks, about the same number
of samples each), so ``auto`` measures instead of trusting the model where it can, as ``cudnn.benchmark`` does for
convolution algorithms: once a composition recurs, every plan on its shortlist runs ``trials`` times in
interleaved sweeps (A, B, C, A, B, C, ...: a load burst or the slow first call of a new shape does not fall on one
plan's trials alone), then the one whose fastest call is fastest runs, and every ``recheck``-th batch one of the
others runs again (in rotation), so a plan slowed by a passing load spike, or sped up since, is measured afresh.
Other load only ever adds time to a call, so each plan is judged by its fastest call among its latest ``window``
ones.

A plan is stored by its *shape* (packed or not, and how many of the length-sorted tasks each pass holds), so the
same race serves every batch whose tasks have the same prompt lengths and about the same sample counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

Shape = tuple[bool, tuple[int, ...]]
"""(one packed pass, tasks per pass over the tasks sorted by prompt length)."""


@dataclass
class Race:
    """The shortlisted shapes of one composition, their latest measured seconds, and which to run next.

    Args:
        shapes: Shapes to race, the cost model's choice first (it runs first, so a race that never finishes
            behaves as the model would).
        kinds: The plan kind each shape is reported as (``padded``, ``per-task``, ``varlen``, ...).
        trials: Timed calls of every shape before the race settles.
        recheck: Every this many batches once settled, run one of the other shapes once (0: never).
        window: Each shape is judged by its fastest call among this many latest ones.
        tolerance, max_trials: A shape whose fastest call is within ``tolerance`` (relative) of the best's after
            its trials is a near-tie: it keeps being timed, alternating with the best, up to ``max_trials`` calls,
            before the race settles. Near-ties are where a few noisy trials pick wrong, and where timing the
            runner-up more costs little (it is nearly as fast).
    """

    shapes: list[Shape]
    kinds: dict[Shape, str]
    trials: int = 3
    recheck: int = 16
    window: int = 32
    tolerance: float = 0.15
    max_trials: int = 8
    times: dict[Shape, deque[float]] = field(default_factory=dict)
    runs: int = 0
    winner: Shape | None = None  # the shape the settled race runs (None while some shape lacks its trials)

    def __post_init__(self) -> None:
        for shape in self.shapes:
            self.times.setdefault(shape, deque(maxlen=max(self.window, self.trials)))

    def contenders(self, best: Shape) -> list[Shape]:
        """Near-ties of ``best`` that have not had their ``max_trials`` calls yet."""
        bound = (1 + self.tolerance) * min(self.times[best])
        return [
            s
            for s in self.shapes
            if s != best and len(self.times[s]) < self.max_trials and min(self.times[s], default=0.0) <= bound
        ]

    @property
    def settled(self) -> bool:
        """Whether every shape has its trials and no near-tie is left to time (decided by measurement)."""
        return all(len(self.times[s]) >= self.trials for s in self.shapes) and not self.contenders(self.fastest())

    def fastest(self) -> Shape:
        """The shape whose fastest latest call is fastest (only meaningful once settled)."""
        return min(self.shapes, key=lambda s: min(self.times[s], default=float("inf")))

    def next(self) -> Shape:
        """The shape to run for this batch: an unmeasured one while trials remain, else the winner, except every
        ``recheck``-th batch, which re-times the others in rotation."""
        self.runs += 1
        pending = [s for s in self.shapes if len(self.times[s]) < self.trials]
        if pending:  # in interleaved sweeps, as calibration: a load burst or a cold start slows every shape alike
            return min(pending, key=lambda s: len(self.times[s]))
        best = self.fastest()
        close = self.contenders(best)
        if close and self.runs % 2:  # near-ties alternate with the best: both timed under the same load
            return min(close, key=lambda s: len(self.times[s]))
        others = [s for s in self.shapes if s != best]
        if self.recheck > 0 and others and self.runs % self.recheck == 0:
            return others[(self.runs // self.recheck) % len(others)]
        return best

    def record(self, shape: Shape, seconds: float) -> Shape | None:
        """Fold one measured call in; returns the new winner when it changed (None otherwise)."""
        self.times[shape].append(seconds)
        if not self.settled:
            return None
        best = self.fastest()
        if best == self.winner:
            return None
        self.winner = best
        return best

    def summary(self) -> str:
        """One line, e.g. ``per-task 12.1 ms, varlen 13.4 ms, padded 20.2 ms`` (fastest latest call, best first)."""
        ranked = sorted(self.shapes, key=lambda s: min(self.times[s], default=float("inf")))
        return ", ".join(
            f"{self.kinds[s]} {1000 * min(self.times[s]):.3g} ms" if self.times[s] else f"{self.kinds[s]} untimed"
            for s in ranked
        )
