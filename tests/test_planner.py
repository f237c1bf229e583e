"""The batch planner: cost model, exact optimum against brute force, calibration, and the bank running its plan."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch
from test_multitask import TASKS, build_artifacts, make_images, micro_backbone

from vptune.backbones import wrap_backbone
from vptune.errors import ConfigError
from vptune.tasks import calibrate as calibrate_module
from vptune.tasks.calibrate import calibrate_blocks, calibrate_passes, fit_cost, spread
from vptune.tasks.multitask import MultiTaskModel
from vptune.tasks.planner import PLANS, BatchPlanner, CostModel, Segment, bucket
from vptune.tasks.race import Race

pytestmark = pytest.mark.usefixtures("one_thread")

SPREAD = [Segment(f"t{i}", 8, p) for i, p in enumerate([1, 8, 15, 22, 29, 36, 43, 50])]  # the benchmark's tasks


def partitions(items: list) -> list[list[list]]:
    """Every set partition of ``items`` (the reference the dynamic programme must match)."""
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out = []
    for part in partitions(rest):
        out.append([[first], *part])
        for k in range(len(part)):
            out.append([*part[:k], [first, *part[k]], *part[k + 1 :]])
    return out


def brute_force(planner: BatchPlanner, segments: list[Segment]) -> float:
    """The cheapest cost over all ways of grouping the tasks into passes, each padded to its longest prompt."""
    return min(planner.price(p) for p in partitions(segments))


@pytest.mark.parametrize(
    ("length", "expected"), [(0, 0), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (9, 16), (50, 64)]
)
def test_bucket(length, expected):
    assert bucket(length) == expected


@pytest.mark.parametrize(
    ("cost", "segments"),
    [
        (CostModel(1.0, 0.0, 0.0, depth=2), SPREAD[:5]),  # tokens only, no pass cost: one pass per length
        (CostModel(1.0, 0.05, 3.0, depth=3), SPREAD[:6]),
        (CostModel(1.0, 0.05, 3.0, depth=3, mask=1.4), SPREAD[:6]),  # masked passes dearer: fewer mixed passes
        (CostModel(0.0, 1.0, 1e6, depth=1), SPREAD[:6]),  # huge pass cost: one padded pass
        (
            CostModel(1e-3, 1e-5, 0.05, depth=6),
            [Segment("a", 1, 0), Segment("b", 30, 2), Segment("c", 1, 40), Segment("d", 2, 39), Segment("e", 5, 7)],
        ),
    ],
)
def test_optimal_plan_matches_brute_force(cost, segments):
    planner = BatchPlanner(base_tokens=65, cost=cost)
    plan = planner.plan(segments)
    assert math.isclose(plan.cost, brute_force(planner, segments), rel_tol=1e-12)
    assert sorted(s.name for p in plan.passes for s in p) == sorted(s.name for s in segments)  # each task once
    assert math.isclose(plan.cost, planner.price(plan.passes), rel_tol=1e-12)


def test_extreme_cost_models_pick_padded_or_per_task():
    per_pass = BatchPlanner(65, CostModel(1e-9, 0.0, 1.0, depth=6)).plan(SPREAD)
    tokens = BatchPlanner(65, CostModel(1.0, 1.0, 0.0, depth=6)).plan(SPREAD)
    assert len(per_pass.passes) == 1 and len(tokens.passes) == len(SPREAD)


def test_candidates_and_fixed_modes():
    planner = BatchPlanner(65, CostModel(1e-6, 1e-8, 1e-3, depth=6), packable=True)
    plans = planner.candidates(SPREAD)
    assert set(plans) == set(PLANS) and len(plans["varlen"].passes) == 1
    assert "varlen" not in planner.candidates([*SPREAD[:2], Segment("lora", 2, 0, packable=False)])
    assert len(plans["padded"].passes) == 1 and len(plans["per-task"].passes) == 8
    assert [[s.length for s in p] for p in plans["buckets"].passes] == [[1], [8], [15], [22, 29], [36, 43, 50]]
    assert plans["auto"].cost <= min(p.cost for k, p in plans.items() if k != "varlen")  # best padded split
    for mode in PLANS:
        planner.mode = mode
        assert planner.plan(SPREAD).passes == plans[mode].passes
    assert planner.plan([Segment("x", 3, 5), Segment("y", 2, 5)]).kind == "padded"  # one length: nothing to split


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": -1.0, "b": 0.0, "c": 0.0, "depth": 1}, "use a, b, c, v, margin >= 0"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "margin": -0.1}, "margin=-0.1"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "mask": 0.0}, "mask > 0"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "factors": (("fast", 8, 1.0),)}, "of the families padded, split"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "r": 0.0}, "r > 0"),
        ({"a": 0.0, "b": 0.0, "c": 1.0, "depth": 1}, r"\(a or b > 0\)"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 0}, "depth >= 1"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "v": -1.0}, "v=-1.0"),
    ],
)
def test_bad_cost_model_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CostModel(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"race_trials": 0}, {"race_band": 0.5}, {"race_after": -1}, {"race_recheck": -2}, {"max_races": 0}],
)
def test_bad_race_settings_rejected(kwargs):
    with pytest.raises(ConfigError, match=f"planner racing: .*{next(iter(kwargs))}={next(iter(kwargs.values()))}"):
        BatchPlanner(65, CostModel(1.0, 0.0, 0.0, depth=1), **kwargs)


def test_bad_mode_rejected():
    with pytest.raises(ConfigError, match="planner mode 'fast' is unknown; choose one of auto, padded"):
        BatchPlanner(65, CostModel(1.0, 0.0, 0.0, depth=1), mode="fast")


@pytest.mark.parametrize(("a", "b", "c"), [(2e-6, 3e-9, 1e-3), (5e-6, 0.0, 2e-4), (0.0, 1e-8, 0.0)])
def test_fit_recovers_known_coefficients(a, b, c):
    truth = CostModel(a, b, c, depth=6)
    points = [(s, n, truth.pass_cost(s, n)) for s, n in itertools.product((1, 4, 16), (65, 97, 161))]
    fitted = fit_cost(points, depth=6)
    for got, want in ((fitted.a, a), (fitted.b, b), (fitted.c, c)):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert fitted.source == "calibrated"


def test_fit_clamps_negative_coefficients():
    points = [(1, 65, 1.0), (1, 97, 0.9), (4, 65, 1.1), (4, 97, 1.0)]  # time falls with tokens: noise
    fitted = fit_cost(points, depth=6)
    assert min(fitted.a, fitted.b, fitted.c) >= 0 and fitted.c > 0
    with pytest.raises(ConfigError, match="give at least 3"):
        fit_cost(points[:2], depth=6)


def test_calibrate_blocks_measures_the_backbone(caplog):
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, "vptune_micro_vit")
    with caplog.at_level(logging.INFO, logger="vptune.planner"):
        cost = calibrate_blocks(arch, 65, batches=(1, 4), extra_tokens=(0, 64), repeats=2)
    assert cost.source == "calibrated" and cost.depth == 6 and cost.pass_cost(4, 100) > 0
    assert "planner calibrated on 4 block runs" in caplog.text


MACHINE = CostModel(2e-6, 3e-9, 1e-3, depth=6, v=5e-4, r=1.3, mask=1.2)


def fake_machine(monkeypatch, truth: CostModel, noise: list[float] | None = None) -> None:
    """Replace calibration timings by ``truth``'s prices; call k of a point is scaled by ``noise[k]``."""
    noise = noise or [1.0]

    def fake_sweep(jobs, repeats):
        out = []
        for job in jobs:
            segments, packed = job.args
            if packed:
                seconds = truth.packed_cost([(s.count, 65 + s.length) for s in segments])
            else:
                masked = len({s.length for s in segments}) > 1
                samples, width = sum(s.count for s in segments), 65 + max(s.length for s in segments)
                seconds = truth.pass_cost(samples, width, masked)
            out.append([seconds * noise[k % len(noise)] for k in range(repeats)])
        return out

    monkeypatch.setattr(calibrate_module, "sweep", fake_sweep)


def test_calibrate_passes_recovers_a_known_machine(monkeypatch):
    """Timings replaced by a known cost model: the fit gives back a, b, c, v, r and the mask factor."""
    fake_machine(monkeypatch, MACHINE)
    cost = calibrate_passes(lambda *a: None, SPREAD, depth=6, base_tokens=65, packed=True)
    for name in ("a", "b", "c", "v", "r", "mask"):
        assert getattr(cost, name) == pytest.approx(getattr(MACHINE, name), rel=1e-6, abs=1e-12), name
    assert cost.margin == 0.02  # noiseless timings: the floor
    assert [(f, n) for f, n, _ in cost.factors] == [("padded", 8), ("padded", 64), ("varlen", 8), ("varlen", 64)]
    assert all(x == pytest.approx(1.0) for *_, x in cost.factors)  # the model prices the timed shapes exactly
    with pytest.raises(ConfigError, match="one prompt length"):
        calibrate_passes(lambda *a: None, SPREAD[:1], depth=6, base_tokens=65)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([[1.0, 1.0, 1.0, 1.0]], 0.0),
        ([[1.0, 1.2, 1.1, 1.3]], 0.1),  # first half's fastest 1.0, second half's 1.1
        ([[2.0, 2.0, 2.2, 2.4], [1.0, 1.0, 1.0, 1.0], [1.0, 1.5, 1.3, 1.6]], 0.1),  # median of 0.1, 0, 0.3
        ([[1.0]], 0.0),  # one call: no spread measured
    ],
)
def test_spread_of_the_fastest_call(times, expected):
    assert spread(times) == pytest.approx(expected)


def test_noisy_calibration_widens_the_margin(monkeypatch):
    fake_machine(monkeypatch, MACHINE, noise=[1.0, 1.3, 1.25, 1.0])  # halves' fastest: 1.0 and 1.0 ...
    assert calibrate_passes(lambda *a: None, SPREAD, depth=6, base_tokens=65, repeats=4).margin == 0.02
    fake_machine(monkeypatch, MACHINE, noise=[1.0, 1.3, 1.25, 1.4])  # ... 1.0 and 1.25: 25% spread
    assert calibrate_passes(lambda *a: None, SPREAD, depth=6, base_tokens=65, repeats=4).margin == pytest.approx(0.25)


SEGS = [Segment("short", 4, 1), Segment("long", 4, 50)]


def priced(padded: float, split: float, packed: float | None = None, margin: float = 0.0) -> BatchPlanner:
    """A planner whose padded pass, best split and packed pass of SEGS cost exactly these (c only, a tiny a)."""
    cost = CostModel(1e-30, 0.0, 0.0, depth=1, v=(packed or 0.0) / 2, margin=margin)  # packed: v per segment
    planner = BatchPlanner(65, cost, packable=packed is not None, race_after=0)  # the model alone decides
    planner._pass = lambda segs: {2: padded, 1: split / 2}[len(segs)]  # type: ignore[method-assign]
    return planner


@pytest.mark.parametrize(
    ("padded", "split", "packed", "margin", "family"),
    [
        (10.0, 8.0, None, 0.0, "split"),
        (10.0, 8.0, None, 0.2, "split"),  # 20% cheaper... 8 * 1.2 = 9.6 < 10
        (10.0, 9.0, None, 0.2, "padded"),  # 10% gain under a 20% spread: keep the padded pass
        (10.0, 12.0, None, 0.0, "padded"),
        (10.0, 12.0, 7.0, 0.2, "varlen"),
        (10.0, 9.5, 9.0, 0.2, "padded"),
        (10.0, 7.0, 8.0, 0.0, "split"),
    ],
)
def test_auto_leaves_the_padded_pass_only_beyond_the_margin(padded, split, packed, margin, family):
    planner = priced(padded, split, packed, margin)
    assert planner.plan(SEGS).family == family


def test_online_correction_moves_auto_back_to_the_padded_pass(caplog):
    planner = priced(10.0, 8.0)
    planner.explore_every = 0
    first = planner.plan(SEGS)
    assert first.family == "split"
    with caplog.at_level(logging.INFO, logger="vptune.planner"):
        planner.observe(planner.plan(SEGS), 16.0)  # the split measures twice its price
    assert planner.correction[("split", 8)] == 2.0 and planner.plan(SEGS).family == "padded"
    assert "planner correction split at 8 samples" in caplog.text
    planner.observe(planner.plan(SEGS), 10.0)  # the padded pass as priced
    assert planner.correction == {("split", 8): 2.0, ("padded", 8): 1.0}
    planner.observe(planner.plan(SEGS), 20.0)  # median of two: their geometric mean
    assert planner.correction[("padded", 8)] == pytest.approx(2**0.5)
    planner.observe(planner.plan(SEGS), 10.0)  # median of 1, 2, 1
    assert planner.correction[("padded", 8)] == pytest.approx(1.0)
    for seconds in (12.0, 40.0, 12.0, 12.0):  # the spike (4x) is ignored; the window keeps the latest 5
        planner.observe(planner.plan(SEGS), seconds)
        assert planner.correction[("padded", 8)] < 1.25
    assert planner.correction[("padded", 8)] == pytest.approx(1.2)
    assert len(planner.observed[("padded", 8)]) == 5
    planner.mode = "per-task"
    planner.observe(first, 1.0)  # forced plans teach nothing
    assert planner.correction[("split", 8)] > 1.25


def test_observations_are_clipped_and_one_length_ignored():
    planner = priced(10.0, 8.0)
    planner.observe(planner.plan(SEGS), 1e6)  # a stall of the machine
    assert planner.correction == {("split", 8): 4.0}
    planner.observe(planner.plan([Segment("a", 3, 5), Segment("b", 2, 5)]), 1e6)
    assert set(planner.correction) == {("split", 8)}


def test_calibrated_shapes_start_as_measured():
    """A packed pass measured at 0.8x its modelled price at 8 samples is priced so from the first batch."""
    cost = CostModel(1e-6, 1e-8, 1e-3, depth=6, v=1e-4, factors=(("varlen", 8, 0.8), ("padded", 64, 1.5)))
    planner = BatchPlanner(65, cost, packable=True)
    assert planner.correction == {("varlen", 8): 0.8, ("padded", 64): 1.5}
    assert planner.observed == {("varlen", 8): [math.log(0.8)], ("padded", 64): [math.log(1.5)]}  # one each
    segs = [Segment(s.name, 1, s.length) for s in SPREAD]  # 8 samples
    packed = planner.candidates(segs)["varlen"]
    assert planner.corrected(packed) == pytest.approx(0.8 * packed.cost)


def test_auto_explores_the_runner_up_within_its_band():
    planner = priced(10.0, 8.0)
    planner.explore_every = 4
    families = [planner.plan(SEGS).family for _ in range(8)]
    assert families == ["split"] * 3 + ["padded"] + ["split"] * 3 + ["padded"]
    default = priced(10.0, 8.0)  # every 16th, and early: the 4th and 8th batch
    runs = [default.plan(SEGS).family for _ in range(32)]
    assert [k + 1 for k, f in enumerate(runs) if f == "padded"] == [4, 8, 16, 32]
    far = priced(10.0, 5.0)  # the padded pass costs twice the split: outside the 1.3 band
    far.explore_every = 4
    assert {far.plan(SEGS).family for _ in range(8)} == {"split"}


def test_race_runs_every_shape_then_the_fastest_and_rechecks_in_rotation():
    a, b, c = (False, (1, 1)), (False, (2,)), (True, (2,))
    race = Race([a, b, c], {a: "per-task", b: "padded", c: "varlen"}, trials=2, recheck=4, window=2)
    truth = {a: 3.0, b: 1.0, c: 2.0}
    runs = []
    for _ in range(14):
        shape = race.next()
        runs.append(shape)
        race.record(shape, truth[shape])
    assert runs[:6] == [a, b, c, a, b, c]  # interleaved sweeps, the model's choice first
    assert race.winner == b and runs[6:] == [b, a, b, b, b, c, b, b]  # runs 8 and 12 re-time a, then c
    assert race.summary() == "padded 1e+03 ms, varlen 2e+03 ms, per-task 3e+03 ms"
    truth[b] = 5.0  # the winner slows down for good: two calls (the window) later it has lost
    changes = []
    for _ in range(6):
        shape = race.next()
        changes.append(race.record(shape, truth[shape]))
    assert race.winner == c and c in changes


def test_race_times_near_ties_longer_and_settles_on_the_faster():
    fast, slow, far = (False, (1, 1)), (True, (2,)), (False, (2,))
    race = Race([slow, fast, far], {slow: "varlen", fast: "per-task", far: "padded"}, trials=2, max_trials=6)
    noise = iter([0.7, 1.0, 1.0, 0.9, 1.1, 1.0] + [1.0] * 50)  # the slow plan's first trial is lucky
    truth = {fast: 1.0, slow: 1.1, far: 2.0}
    runs = []
    while not race.settled:
        shape = race.next()
        runs.append(shape)
        race.record(shape, truth[shape] * (next(noise) if shape == slow else 1.0))
        assert len(runs) < 30
    assert race.winner == slow  # a call 23% lucky, beyond the tolerance, stands (the window keeps it) ...
    assert runs.count(far) == 2 and runs.count(fast) == 2  # ... and plans beyond the tolerance stop after their trials
    race = Race([slow, fast, far], {slow: "varlen", fast: "per-task", far: "padded"}, trials=2, max_trials=6)
    calls = iter([1.0, 1.02, 1.05, 1.0, 1.03, 1.01])  # a near-tie (10%, inside the 15% tolerance): timed 6 times
    while not race.settled:
        shape = race.next()
        race.record(shape, truth[shape] * (next(calls) if shape == slow else 1.0))
    assert race.winner == fast and len(race.times[slow]) == 6 and len(race.times[far]) == 2


def test_race_window_forgets_an_old_fast_call():
    a, b = (False, (1, 1)), (False, (2,))
    race = Race([a, b], {a: "x", b: "y"}, trials=1, recheck=0, window=2)
    race.record(a, 1.0)  # a lucky fast call ...
    race.record(b, 2.0)
    assert race.winner == a
    race.record(a, 3.0)
    assert race.winner == a  # ... still inside the window
    race.record(a, 3.0)
    assert race.winner == b and race.next() == b


class Machine:
    """Measured seconds per plan shape that the cost model gets wrong (the winner is not the model's choice)."""

    def __init__(self, planner: BatchPlanner, segments: list[Segment], slower: dict) -> None:
        ordered = sorted(segments, key=lambda s: s.length)
        self.truth = {}
        for kind, plan in planner.candidates(ordered).items():
            self.truth[plan.shape] = plan.cost * slower.get(kind, 1.0)

    def run(self, planner: BatchPlanner, segments: list[Segment], batches: int) -> list:
        shapes = []
        for _ in range(batches):
            plan = planner.plan(segments)
            shapes.append(plan.shape)
            planner.observe(plan, self.truth[plan.shape])
        return shapes


def test_auto_races_a_recurring_composition_to_the_measured_fastest_plan(caplog):
    cost = CostModel(1.7e-5, 9.2e-9, 6.1e-3, depth=6, v=1e-4, r=1.5, mask=1.27)
    planner = BatchPlanner(65, cost, packable=True, race_trials=2, race_recheck=10)
    model = planner.choose(SPREAD)[0]
    slower = {"per-task": 0.5} if model.family != "split" else {"varlen": 0.5}  # truth: not the model's pick
    machine = Machine(planner, SPREAD, slower)
    fastest = min(machine.truth, key=machine.truth.get)
    assert fastest != model.shape
    with caplog.at_level(logging.INFO, logger="vptune.planner"):
        shapes = machine.run(planner, SPREAD, 60)
    race = planner.races[planner.composition(SPREAD)]
    assert isinstance(race, Race) and race.winner == fastest
    new = planner.race_after - 1  # the first sights of a composition: the model decides
    assert shapes[: new + 1] == [model.shape] * (new + 1)  # then the race starts with the model's choice
    settle = new + race.trials * len(race.shapes)
    assert set(shapes[new:settle]) == set(race.shapes) and len(race.shapes) >= 2  # every shortlisted plan timed
    after = shapes[settle:]
    assert after.count(fastest) >= len(after) - len(after) // 10 - 1  # all but the rechecks
    assert f"runs ({race.kinds[fastest]}" in caplog.text
    assert sum(machine.truth[s] for s in after) <= 1.25 * len(after) * machine.truth[fastest]


@pytest.mark.parametrize(
    ("settings", "raced"),
    [({}, True), ({"race_after": 0}, False), ({"learn": False}, False), ({"mode": "per-task"}, False)],
)
def test_race_only_in_learning_auto_mode(settings, raced):
    planner = BatchPlanner(65, CostModel(1e-6, 1e-8, 1e-3, depth=6), **settings)
    for _ in range(planner.race_after or 4):
        planner.observe(planner.plan(SPREAD), 1.0)
    assert any(isinstance(r, Race) for r in planner.races.values()) is raced


def test_race_compositions_bucket_counts_and_are_bounded():
    planner = BatchPlanner(65, CostModel(1e-6, 1e-8, 1e-3, depth=6), max_races=3)
    seven = [Segment(s.name, 7, s.length) for s in SPREAD]  # 7 and 8 samples share the bucket 8
    assert planner.composition(seven) == planner.composition(SPREAD)
    assert planner.composition([Segment("x", 8, 50), Segment("y", 8, 1)]) == ((1, 8, True), (50, 8, True))
    for n in range(1, 6):
        planner.plan([Segment("a", 1, 1), Segment("b", 1, 1 + n)])
    assert len(planner.races) == 3 and list(planner.races)[-1] == ((1, 1, True), (6, 1, True))


@pytest.mark.parametrize(("v", "kind"), [(1e-9, "varlen"), (10.0, "auto")])
def test_auto_picks_a_packed_pass_only_when_priced_cheaper(v, kind):
    cost = CostModel(1e-6, 1e-8, 1e-3, depth=6, v=v)
    assert BatchPlanner(65, cost, packable=True).plan(SPREAD).kind == kind
    assert BatchPlanner(65, cost, packable=False).plan(SPREAD).kind == "auto"  # the backbone can not pack


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> MultiTaskModel:
    names = ["deep", "shallow", "linear", "late", "lora"]
    return MultiTaskModel.from_dirs(build_artifacts(tmp_path_factory.mktemp("plan"), names))


@pytest.mark.parametrize(
    ("mode", "passes"),
    [("padded", 1), ("per-task", 5), ("buckets", 3)],  # lengths 2, 5, 0, 7, 0 -> buckets 2, 8, 0, 8, 0
)
def test_bank_runs_the_plans_passes(bank, monkeypatch, caplog, mode, passes):
    assert bank.entries["lora"].isolated_reason is None  # LoRA shares the backbone
    widths = []
    real = bank._forward_shared

    def spy(images, segments):
        widths.append(sorted(bank.entries[n].length for n, _ in segments))
        return real(images, segments)

    monkeypatch.setattr(bank, "_forward_shared", spy)
    bank.planner.mode = mode
    names = ["deep", "shallow", "linear", "late", "lora", "deep"]
    with torch.no_grad(), caplog.at_level(logging.DEBUG, logger="vptune.planner"):
        out = bank(bank.preprocess(make_images(len(names))), names)
    assert len(widths) == passes and sum(len(w) for w in widths) == 5
    assert [len(o) for o in out] == [TASKS[n][1] for n in names]
    assert f"batch of 6 samples, 5 tasks -> {mode}:" in caplog.text


def test_auto_mode_calibrates_once_before_choosing(bank, monkeypatch):
    bank.planner.mode, bank.planner.cost = "auto", CostModel.from_flops(192, 6)
    calls = []
    monkeypatch.setattr(
        bank, "calibrate", lambda: calls.append(1) or setattr(bank.planner, "cost", CostModel(1.0, 0.0, 0.0, depth=6))
    )
    with torch.no_grad():
        for _ in range(2):
            bank(bank.preprocess(make_images(2)), ["deep", "late"])
    assert calls == [1] and bank.planner.chosen["auto:2-pass"] >= 2


def test_bank_calibrates_on_its_own_tasks(bank, caplog):
    with caplog.at_level(logging.INFO, logger="vptune.planner"):
        cost = bank.calibrate(batches=(1, 2), repeats=1)
    assert bank.planner.cost is cost and cost.source == "calibrated" and cost.v > 0  # the micro ViT packs
    assert cost.mask > 0 and cost.margin >= 0.02
    assert "planner calibrated on 10 passes x 1" in caplog.text  # 3 lengths x 2 batches + 2 masked + 2 packed


def test_serve_config_sets_the_plan(bank):
    pytest.importorskip("fastapi")
    from vptune.serve.app import create_app
    from vptune.serve.config import ServeConfig

    create_app(bank, plan="varlen")
    assert bank.planner.mode == "varlen" and ServeConfig(plan="varlen").plan == "varlen"
    create_app(bank, plan="per-task")
    assert bank.planner.mode == "per-task"
    with pytest.raises(ConfigError, match="field 'plan'"):
        ServeConfig(plan="fast")
    with pytest.raises(ConfigError, match="planner mode 'fast' is unknown"):
        bank.set_plan("fast")
    assert bank.planner.mode == "per-task"


def test_recalibration_keeps_settings_and_forgets_what_was_learnt():
    planner = BatchPlanner(65, CostModel(1e-6, 1e-8, 1e-3, depth=6), race_after=1, race_trials=5, explore_every=3)
    for _ in range(3):
        planner.observe(planner.plan(SPREAD), 1.0)
    assert planner.races and planner.correction and planner.chosen
    cost = CostModel(2e-6, 1e-8, 1e-3, depth=6, source="calibrated")
    fresh = planner.recalibrated(cost)
    assert fresh.cost is cost and (fresh.race_after, fresh.race_trials, fresh.explore_every) == (1, 5, 3)
    assert not (fresh.races or fresh.correction or fresh.observed or fresh.chosen or fresh.batches)
    assert planner.races  # the old planner is untouched
