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
from vptune.tasks import planner as planner_module
from vptune.tasks.multitask import MultiTaskModel
from vptune.tasks.planner import (
    PLANS,
    BatchPlanner,
    CostModel,
    Segment,
    bucket,
    calibrate_blocks,
    calibrate_passes,
    fit_cost,
)

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
        ({"a": -1.0, "b": 0.0, "c": 0.0, "depth": 1}, "use a, b, c, v >= 0"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "r": 0.0}, "r > 0"),
        ({"a": 0.0, "b": 0.0, "c": 1.0, "depth": 1}, r"\(a or b > 0\)"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 0}, "depth >= 1"),
        ({"a": 1.0, "b": 0.0, "c": 0.0, "depth": 1, "v": -1.0}, "v=-1.0"),
    ],
)
def test_bad_cost_model_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CostModel(**kwargs)


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


def test_calibrate_passes_recovers_a_known_machine(monkeypatch):
    """Timings replaced by a known cost model: the fit must give back its a, b, c and v."""
    truth = CostModel(2e-6, 3e-9, 1e-3, depth=6, v=5e-4, r=1.3)
    last: list = []

    def fake_time(fn):
        fn()
        segments, packed = last
        if packed:
            return truth.packed_cost([(s.count, 65 + s.length) for s in segments])
        return truth.pass_cost(sum(s.count for s in segments), 65 + max(s.length for s in segments))

    monkeypatch.setattr(planner_module, "_sweep", lambda jobs, repeats: [fake_time(job) for job in jobs])
    cost = calibrate_passes(
        lambda segs, packed: last.__setitem__(slice(None), [segs, packed]), SPREAD, depth=6, base_tokens=65, packed=True
    )
    for name in "abcvr":
        assert getattr(cost, name) == pytest.approx(getattr(truth, name), rel=1e-6, abs=1e-12)
    with pytest.raises(ConfigError, match="one prompt length"):
        calibrate_passes(lambda *a: None, SPREAD[:1], depth=6, base_tokens=65)


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
    assert "planner calibrated on 8 passes" in caplog.text  # 3 lengths x 2 batches + 2 packed passes


def test_serve_config_sets_the_plan(bank):
    pytest.importorskip("fastapi")
    from vptune.serve.app import create_app
    from vptune.serve.config import ServeConfig

    create_app(bank, plan="per-task")
    assert bank.planner.mode == "per-task"
    with pytest.raises(ConfigError, match="field 'plan'"):
        ServeConfig(plan="fast")
    with pytest.raises(ConfigError, match="planner mode 'fast' is unknown"):
        bank.set_plan("fast")
    assert bank.planner.mode == "per-task"
