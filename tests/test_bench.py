"""The benchmark harness: plan expansion, an end-to-end resumable bench, reports, Wilcoxon, visualize."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from test_vtab_fgvc import make_vtab_tree

from vptune.bench import build_plan, build_report, load_suite, run_suite, write_report
from vptune.bench.aggregate import Cell
from vptune.bench.plan import select
from vptune.bench.stats import wilcoxon_vs
from vptune.bench.suite import ADAMW_LRS, SGD_LRS, WDS, Suite, shipped_suites
from vptune.cli import main
from vptune.errors import ConfigError

TINY_SIZES = {"train800": 12, "val200": 6, "test": 9}


def tiny_suite(root: Path, **fields) -> Suite:
    """1 custom task (a 3-class VTAB-layout tree), 2 methods, 2-point grid, 2 seeds, 1 epoch, micro ViT random init."""
    make_vtab_tree(root, "tiny", 3, sizes=TINY_SIZES, classes_txt=True)
    tree = {
        "name": "tiny",
        "benchmark": "custom",
        "model": {"name": "vptune_micro_vit", "pretrained": False},
        "tasks": [{"name": "tiny", "spec": f"vtab1k:{root}/tiny", "group": "natural"}],
        "methods": [
            {"name": "linear", "grid": {"lr": [0.1, 1.0], "wd": [0.0]}},
            {"name": "vpt-deep", "method": {"prompt_length": 2}, "grid": {"lr": [0.5], "wd": [0.0, 0.001]}},
        ],
        "seeds": [0, 1],
        "epochs": 1,
        "batch_size": 6,
        "warmup_epochs": 0,
        "splits": {"select_train": "train800", "select_val": "val200", "final_train": "train800val200", "test": "test"},
        "overrides": {"train.device": "cpu"},
        **fields,
    }
    return Suite(**tree)


def test_shipped_suites_load_with_paper_grids():
    assert {"vtab1k", "fgvc", "offline", "offline-quick"} <= set(shipped_suites())
    suite = load_suite("vtab1k")
    by = {m.name: m for m in suite.methods}
    assert by["vpt-deep"].optimizer == "sgd" and by["vpt-deep"].grid.lr == list(SGD_LRS)
    assert by["full"].optimizer == "adamw" and by["full"].grid.lr == list(ADAMW_LRS) and by["full"].grid.wd == list(WDS)
    assert by["partial-1"].method == {"name": "partial", "head_init": "official", "k": 1}
    assert by["partial-1"].paper_label == "partial_1"
    plan = build_plan(suite, "/tmp/never-written")
    # SGD: linear, mlp-3, sidetune 40 each, vpt-shallow/deep 40 x 6 prompt lengths; AdamW: 16, adapter 16 x 3 r
    assert plan["counts"]["select"] == 19 * (3 * 40 + 2 * 240 + 3 * 16 + 48) and plan["counts"]["final"] == 19 * 9 * 5
    assert [t["num_classes"] for t in plan["tasks"]][:3] == [100, 102, 47]
    with pytest.raises(ConfigError, match="method.*prompt_lenght"):
        load_suite("offline-quick", ["methods=[{name: vpt-deep, method: {prompt_lenght: 3}}]"])


@pytest.mark.parametrize("name", shipped_suites())
def test_every_shipped_suite_loads_and_plans(name):
    suite = load_suite(name)
    plan = build_plan(suite, "/tmp/never-written")
    finals = len(suite.seeds) * len(suite.train_fractions)
    per_task = sum(
        len(m.grid.lr) * len(m.grid.wd) * math.prod(len(v) for v in m.grid.method.values()) + finals
        for m in suite.methods
    )
    assert plan["counts"]["total"] == len(suite.tasks) * per_task
    assert all(t["num_classes"] for t in plan["tasks"]) or suite.benchmark == "custom"


def test_bench_help_names_every_shipped_suite(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in shipped_suites())


def test_plan_expands_grid_seeds_phases_and_fractions(tmp_path):
    suite = tiny_suite(tmp_path, train_fractions=[0.5, 1.0])
    plan = build_plan(suite, tmp_path / "out")
    assert plan["counts"] == {"select": 4, "final": 4, "final-frac0.5": 4, "total": 12, "done": 0}
    runs = plan["runs"]
    sel = [r for r in runs if r["phase"] == "select"]
    assert {(r["method"], r["lr"], r["wd"]) for r in sel} == {
        ("linear", 0.1, 0.0), ("linear", 1.0, 0.0), ("vpt-deep", 0.5, 0.0), ("vpt-deep", 0.5, 0.001),
    }  # fmt: skip
    assert all(r["test_split"] is None and r["val_split"] == "val200" and r["seed"] == 0 for r in sel)
    finals = [r for r in runs if r["phase"].startswith("final")]
    assert len(finals) == 2 * 2 * 2 and all(r["test_split"] == "test" and r["val_split"] is None for r in finals)
    assert {r["phase"] for r in finals} == {"final", "final-frac0.5"} and all(r["lr"] is None for r in finals)
    assert sel[0]["dir"].endswith("runs/tiny/linear/select/0.1_0_0")


def test_best_val_epoch_fixes_final_epochs_and_overrides_flatten(tmp_path):
    from vptune.bench.plan import final_runs, run_config
    from vptune.bench.suite import resolve_task

    suite = tiny_suite(tmp_path, protocol="best-val-epoch", overrides={"train": {"device": "cpu", "amp": "off"}})
    task, method = resolve_task(suite, suite.tasks[0]), suite.methods[1]
    runs = final_runs(suite, task, method, {"lr": 0.5, "wd": 0.0, "epochs": 3})
    assert [r.epochs for r in runs] == [3, 3] and runs[0].folder(tmp_path).name == "0.5_0_0"
    cfg = run_config(suite, task, method, runs[0], tmp_path, progress=False)
    assert (cfg.train.epochs, cfg.train.device, cfg.train.amp, cfg.data.val_split) == (3, "cpu", "off", None)
    assert cfg.optim.scale_lr and cfg.method.prompt_length == 2 and cfg.data.test_split == "test"
    assert "best val top-1 over the epochs" in suite.protocol_text()


def test_selection_uses_validation_only():
    def res(lr, curve):
        return {
            "lr": lr,
            "wd": 0.0,
            "dir": "x",
            "val_curve": [{"epoch": i + 1, "top1": v} for i, v in enumerate(curve)],
        }

    results = [res(0.1, [0.9, 0.5]), res(1.0, [0.2, 0.6]), res(5.0, [0.1, 0.6])]
    paper = select(results, "paper")
    assert (paper["lr"], paper["val_top1"], paper["epochs"], paper["candidates"]) == (1.0, 0.6, None, 3)
    best = select(results, "best-val-epoch")
    assert (best["lr"], best["epochs"]) == (0.1, 1)


def test_dry_run_json_cli(tmp_path, capsys):
    code = main(["bench", "offline-quick", "--out", str(tmp_path), "--dry-run", "--json", "--tasks", "digits"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and plan["tasks"] == [
        {"name": "digits", "group": "natural", "num_classes": 10, "spec": "offline:digits"}
    ]
    assert plan["counts"]["total"] == len(plan["runs"]) and not any(r["done"] for r in plan["runs"])
    assert not (tmp_path / "runs").exists()
    # without --data-root: the plan over placeholders, and exit 1 naming the missing task folders
    assert main(["bench", "vtab1k", "--out", str(tmp_path), "--dry-run", "--methods", "vpt-deep"]) == 1
    out, err = capsys.readouterr()
    assert "<data-root>" in out and "19 task folders missing" in err


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    suite = tiny_suite(root)
    first = run_suite(suite, root / "out")
    second = run_suite(suite, root / "out")
    return root, suite, first, second


def test_bench_end_to_end_resumes_and_keeps_test_out_of_selection(bench_out):
    root, _, first, second = bench_out
    assert (first["trained"], first["skipped"]) == (8, 0)
    assert (second["trained"], second["skipped"]) == (0, 8)
    results = [json.loads(p.read_text()) for p in sorted((root / "out/runs").glob("**/result.json"))]
    select_runs = [r for r in results if r["phase"] == "select"]
    assert len(select_runs) == 4 and len(results) == 8
    for r in select_runs:
        assert not any(k.startswith("test") for k in r["metrics"]) and r["splits"]["test"] is None
        log = (Path(r["dir"]) / "metrics.jsonl").read_text()
        assert '"split": "test"' not in log and len(r["val_curve"]) == 1
    for r in results:
        if r["phase"] == "final":
            sel = [s for s in select_runs if s["method"] == r["method"]]
            best = max(sel, key=lambda s: s["val_curve"][-1]["top1"])  # ties: first in grid order
            assert r["lr"] == r["selection"]["lr"] and r["selection"]["val_top1"] == best["val_curve"][-1]["top1"]
            assert 0.0 <= r["metrics"]["test_top1"] <= 1.0 and r["metrics"]["test_n"] == 9
    r = results[0]
    for key in ("config", "provenance", "timings", "peak_memory_bytes", "params", "artifact_bytes", "protocol"):
        assert r[key] is not None, key
    assert r["provenance"]["torch"] and "git_commit" in r["provenance"] and r["protocol"] == "paper"


def test_bench_report_from_real_runs(bench_out):
    root = bench_out[0]
    rep = write_report(root / "out")
    assert Path(rep["files"][0]).read_text().startswith("# vptune benchmark report")
    assert (root / "out" / "report_groups.png").stat().st_size > 0
    assert [s["method"] for s in rep["summary"]] == ["linear", "vpt-deep"] and not rep["paper"]


def test_visualize_writes_png(bench_out, tmp_path):
    root = bench_out[0]
    task_dir = next((root / "out/runs/tiny/vpt-deep/final").iterdir())
    png = tmp_path / "tsne.png"
    assert (
        main(["visualize", str(task_dir), "--data", f"vtab1k:{root}/tiny", "--out", str(png), "--device", "cpu"]) == 0
    )
    assert png.read_bytes()[:4] == b"\x89PNG"


def fake_result(method, task, group, seed, top1, **kw):
    """A minimal result JSON as the runner writes it."""
    return {
        "suite": kw.get("suite", "fake"),
        "benchmark": kw.get("benchmark", "custom"),
        "protocol": "paper",
        "protocol_description": "paper: ...",
        "task": task,
        "group": group,
        "method": method,
        "paper_method": method.replace("-", "_"),
        "method_config": {"name": kw.get("method_name", method), "prompt_length": kw.get("p")},
        "backbone": kw.get("backbone", "vptune_micro_vit"),
        "phase": kw.get("phase", "final"),
        "lr": 0.1,
        "wd": 0.0,
        "seed": seed,
        "train_fraction": kw.get("fraction", 1.0),
        "provenance": {"vptune": "0.1.0", "torch": "2", "timm": "1", "git_commit": None, "device": "cpu"},
        "params": {"trainable_params": kw.get("trainable", 10), "backbone_params": 1000},
        "artifact_bytes": kw.get("bytes", 500),
        "metrics": {"test_top1": top1},
        "selection": {"lr": 0.1, "wd": 0.0, "val_top1": 0.5, "epochs": None, "criterion": "c", "candidates": 2},
    }


def write_fake(out: Path, results: list[dict]) -> None:
    for i, r in enumerate(results):
        path = out / "runs" / r["task"] / r["method"] / r["phase"] / f"{i}" / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(r))


def test_report_numbers_match_hand_computation(tmp_path):
    acc = {  # method -> task -> seeds
        "full": {"a": [0.80, 0.82], "b": [0.60, 0.64], "c": [0.50, 0.40]},
        "vpt-deep": {"a": [0.85, 0.81], "b": [0.50, 0.56], "c": [0.55, 0.57]},
        "linear": {"a": [0.70, 0.70], "b": [0.40, 0.42]},
    }
    group = {"a": "g1", "b": "g1", "c": "g2"}
    trainable = {"full": 1010, "vpt-deep": 30, "linear": 10}
    results = [fake_result(m, t, group[t], s, v, trainable=trainable[m], bytes=100 * trainable[m])
               for m, tasks in acc.items() for t, seeds in tasks.items() for s, v in enumerate(seeds)]  # fmt: skip
    write_fake(tmp_path, results)
    rep = write_report(tmp_path)
    per = {(r["method"], r["task"]): r for r in rep["per_task"]}
    mean = {(m, t): statistics.fmean(100 * v for v in seeds) for m, ts in acc.items() for t, seeds in ts.items()}
    for (m, t), seeds in ((k, acc[k[0]][k[1]]) for k in mean):
        assert per[(m, t)]["mean"] == pytest.approx(mean[(m, t)])
        assert per[(m, t)]["std"] == pytest.approx(statistics.stdev(100 * v for v in seeds))
    summ = {s["method"]: s for s in rep["summary"]}
    g1 = statistics.fmean([mean[("vpt-deep", "a")], mean[("vpt-deep", "b")]])
    assert summ["vpt-deep"]["groups"]["g1"]["mean"] == pytest.approx(g1)
    assert list(summ["linear"]["groups"]) == ["g1"] and summ["linear"]["n_tasks"] == 2
    assert summ["vpt-deep"]["wins_vs_full"] == (2, 3) and summ["linear"]["wins_vs_full"] == (0, 2)
    assert summ["full"]["total_params_x"] == pytest.approx(3 * 1010 / 1000)
    assert summ["vpt-deep"]["total_params_x"] == pytest.approx((1000 + 3 * 30) / 1000)
    assert summ["linear"]["total_params_x"] == pytest.approx((1000 + 2 * 10) / 1000)
    assert summ["vpt-deep"]["stored_bytes_per_task"] == 3000
    md = (tmp_path / "report.md").read_text()
    assert "| 3.03x |" in md and "| 2/3 |" in md
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert rows[0].startswith("kind,benchmark") and any(r.startswith("group_mean,") for r in rows)


def test_several_backbones_compare_with_their_own_full(tmp_path):
    # two families: family A's vpt beats A's full on both tasks, B's vpt loses to B's full on both; A's full is
    # far below B's, so comparing B's vpt with A's full (the first full row) would count 2 wins, not 0.
    acc = {
        ("a-full", "full", "A"): {"t1": 0.30, "t2": 0.40},
        ("a-vpt", "vpt-deep", "A"): {"t1": 0.35, "t2": 0.45},
        ("b-full", "full", "B"): {"t1": 0.90, "t2": 0.80},
        ("b-vpt", "vpt-deep", "B"): {"t1": 0.60, "t2": 0.70},
    }
    results = [fake_result(label, t, "g", s, v + 0.01 * s, method_name=name, backbone=bb)
               for (label, name, bb), ts in acc.items() for t, v in ts.items() for s in (0, 1)]  # fmt: skip
    write_fake(tmp_path, results)
    rep = write_report(tmp_path)
    summ = {s["method"]: s for s in rep["summary"]}
    assert rep["baselines_per_backbone"] is True
    assert summ["a-vpt"]["baselines"] == {"full": "a-full", "vpt-deep": "a-vpt"}
    assert summ["b-vpt"]["baselines"] == {"full": "b-full", "vpt-deep": "b-vpt"}
    assert summ["a-vpt"]["wins_vs_full"] == (2, 2) and summ["b-vpt"]["wins_vs_full"] == (0, 2)
    assert summ["b-vpt"]["wilcoxon"]["vs_full"]["mean_diff"] == pytest.approx(-20.0)
    assert summ["b-full"]["wilcoxon"]["vs_vpt_deep"]["mean_diff"] == pytest.approx(20.0)
    md = (tmp_path / "report.md").read_text()
    assert "of its own backbone" in md and "vs b-full" in md and "vs a-full" in md


def test_paper_columns_join_on_paper_backbone(tmp_path):
    kw = {"backbone": "vit_base_patch16_224.orig_in21k", "benchmark": "vtab1k", "suite": "vtab1k"}
    results = [fake_result("full", "cifar100", "natural", 0, 0.70, **kw),
               fake_result("vpt-deep", "cifar100", "natural", 0, 0.79, **kw),
               fake_result("vpt-deep", "dtd", "natural", 0, 0.60, **kw)]  # fmt: skip
    write_fake(tmp_path, results)
    rep = build_report(tmp_path)
    per = {(r["method"], r["task"]): r for r in rep["per_task"]}
    assert rep["paper"] and per[("full", "cifar100")]["paper"] == 68.9
    assert per[("full", "cifar100")]["delta"] == pytest.approx(70.0 - 68.9)
    deep = next(s for s in rep["summary"] if s["method"] == "vpt-deep")
    assert deep["groups"]["natural"]["paper"] == 78.48 and deep["paper_total_params_x"] == 1.18
    md = write_report(tmp_path)["files"][0]
    assert "paper (Jia et al. 2022)" in Path(md).read_text()
    results[0]["backbone"] = results[1]["backbone"] = results[2]["backbone"] = "vit_base_patch16_224.augreg_in21k"
    other = tmp_path / "other"
    write_fake(other, results)
    assert not build_report(other)["paper"]


def test_wilcoxon_na_and_values():
    from scipy.stats import wilcoxon

    def table(a, b):
        out = {}
        for i, (x, y) in enumerate(zip(a, b)):
            out[("m", f"t{i}")] = Cell("m", f"t{i}", "g", [x])
            out[("full", f"t{i}")] = Cell("full", f"t{i}", "g", [y])
        return out

    tasks = [f"t{i}" for i in range(6)]
    one = wilcoxon_vs(table([1.0], [2.0]), "m", "full", tasks)
    assert one["p"] is None and one["n"] == 1 and "< 2" in one["note"]
    same = wilcoxon_vs(table([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), "m", "full", tasks)
    assert same["p"] is None and "all differences 0" in same["note"]
    assert wilcoxon_vs({}, "m", None, tasks)["note"].startswith("n/a")
    a, b = [5.0, 6.0, 7.5, 8.0, 9.0, 1.0], [4.0, 5.5, 7.0, 6.0, 8.5, 2.0]
    res = wilcoxon_vs(table(a, b), "m", "full", tasks)
    assert res["n"] == 6 and res["p"] == pytest.approx(wilcoxon([x - y for x, y in zip(a, b)]).pvalue)


def test_prompt_length_and_data_fraction_plots(tmp_path):
    results = []
    for p, acc in ((1, 0.5), (10, 0.6), (50, 0.7)):
        results += [fake_result(f"vpt-deep-p{p}", t, "g", 0, acc, method_name="vpt-deep", p=p) for t in ("a", "b")]
    for f, acc in ((0.1, 0.3), (0.5, 0.5)):
        phase = f"final-frac{f:g}"
        results += [fake_result("vpt-deep-p10", t, "g", 0, acc, method_name="vpt-deep", p=10, fraction=f, phase=phase)
                    for t in ("a", "b")]  # fmt: skip
    write_fake(tmp_path, results)
    rep = write_report(tmp_path)
    assert rep["prompt_length"] == {"vpt-deep": [(1.0, 50.0), (10.0, 60.0), (50.0, 70.0)]}
    assert sorted(rep["low_data"]["vpt-deep-p10"]) == [(0.1, 30.0), (0.5, 50.0), (1.0, 60.0)]
    for name in ("report_prompt_length.png", "report_data_fraction.png", "report_groups.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
