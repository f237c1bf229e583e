"""Experiment loggers (train.logger): the TensorBoard event file and the CSV files read back after a real run."""

from __future__ import annotations

import csv
import json

import pytest
from test_engine import run_config

from vptune.engine.loggers import CsvLogger, build_logger, rows_of
from vptune.engine.trainer import fit

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCH = {
    "epoch": 2,
    "step": 6,
    "train": {"loss": 0.5, "top1": 0.75, "n": 12, "skipped": 0, "seconds": 1.5, "images_per_s": 8.0, "lr": 0.01},
    "val": {"top1": 0.5, "loss": 0.9, "n": 6, "skipped": 0, "seconds": 0.2},
}


def test_rows_of_records():
    rows = rows_of(EPOCH)
    assert [(r["split"], r["epoch"], r["step"]) for r in rows] == [("train", 2, 6), ("val", 2, 6)]
    assert rows[0]["lr"] == 0.01 and rows[0]["images_per_s"] == 8.0 and "lr" not in rows[1]
    assert rows_of({"split": "test", "top1": 0.9, "loss": 0.3, "n": 9}) == [
        {"split": "test", "top1": 0.9, "loss": 0.3, "n": 9}
    ]


def test_tensorboard_event_file_holds_the_run(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = fit(run_config(image_folder, out, **{"train.epochs": 2, "train.logger": "tensorboard"}))
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/top1", "train/lr", "train/images_per_s", "val/top1", "test/top1"):
        assert tag in tags, tag
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in loss] == [1, 2]
    assert [v for _, v in loss] == pytest.approx([h["train"]["loss"] for h in result.history], rel=1e-6)
    lr = [e.value for e in acc.Scalars("train/lr")]
    assert lr == pytest.approx([h["train"]["lr"] for h in result.history], rel=1e-6)
    assert acc.Scalars("test/top1")[0].value == pytest.approx(result.metrics["test_top1"])
    params = {t: acc.Scalars(t)[0].value for t in tags if t.startswith("params/")}
    assert params["params/trainable_params"] == result.summary["trainable_params"]
    assert params["params/backbone_params"] == result.summary["backbone_params"]
    # metrics.jsonl is written as before: two epochs and the test
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("epoch", x.get("split")) for x in lines] == [1, 2, "test"]


def test_csv_logger_files(image_folder, tmp_path):
    out = tmp_path / "run"
    result = fit(run_config(image_folder, out, **{"train.epochs": 2, "train.logger": "csv"}))
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["split"], r["epoch"]) for r in rows] == [
        ("train", "1"),
        ("val", "1"),
        ("train", "2"),
        ("val", "2"),
        ("test", ""),
    ]
    assert float(rows[2]["loss"]) == pytest.approx(result.history[1]["train"]["loss"])
    assert float(rows[-1]["top1"]) == pytest.approx(result.metrics["test_top1"])
    with (out / "params.csv").open() as f:
        params = {r["name"]: r["value"] for r in csv.DictReader(f)}
    assert int(params["trainable_params"]) == result.summary["trainable_params"]
    assert params["method.name"] == "vpt-deep"


def test_jsonl_default_writes_nothing_else(image_folder, tmp_path):
    out = tmp_path / "run"
    fit(run_config(image_folder, out, **{"train.epochs": 1}))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "task.json", "task.safetensors"]


def test_csv_resume_drops_rows_after_the_checkpoint(tmp_path):
    log = CsvLogger(tmp_path)
    for epoch in (1, 2, 3):
        log.log(**{**EPOCH, "epoch": epoch})
    resumed = CsvLogger(tmp_path, resume_epoch=2)  # the checkpoint holds 2 epochs; epoch 3 runs again
    resumed.log(**{**EPOCH, "epoch": 3, "train": {**EPOCH["train"], "loss": 0.1}})
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["split"], r["epoch"]) for r in rows] == [(s, str(e)) for e in (1, 2, 3) for s in ("train", "val")]
    assert rows[4]["loss"] == "0.1"


def test_disabled_logger_writes_nothing(tmp_path):
    log = build_logger("csv", tmp_path / "x", enabled=False)
    log.log(**EPOCH)
    log.log_params({"a": 1})
    log.close()
    assert not (tmp_path / "x").exists()


def test_bench_runs_log_per_run(tmp_path):
    from vptune.bench.plan import run_config as bench_run_config
    from vptune.bench.plan import selection_runs
    from vptune.bench.suite import load_suite, resolve_task

    suite = load_suite("offline-quick", ["overrides.train.logger=tensorboard"])
    task = resolve_task(suite, suite.tasks[0])
    method = suite.methods[0]
    runs = selection_runs(suite, task, method)[:2]
    configs = [bench_run_config(suite, task, method, r, tmp_path, False) for r in runs]
    assert [c.train.logger for c in configs] == ["tensorboard", "tensorboard"]
    assert configs[0].train.device == "cpu"  # the suite's own overrides stay
    assert len({c.out for c in configs}) == 2  # each run's folder gets its own event file


def test_tensorboard_resume_replaces_epochs_logged_after_the_checkpoint(image_folder, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import vptune.engine.trainer as trainer

    out = tmp_path / "run"
    flags = {"train.epochs": 3, "train.logger": "tensorboard"}
    real_save = trainer.save_checkpoint

    def crash_on_third(folder, state):
        if state["epoch"] == 2:  # epoch 3 is logged, then the process dies before its checkpoint
            raise KeyboardInterrupt
        real_save(folder, state)

    monkeypatch.setattr(trainer, "save_checkpoint", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        fit(run_config(image_folder, out, **flags))
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    result = fit(run_config(image_folder, out, **flags))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in loss] == [1, 2, 3]  # epoch 3 once: the resumed run's
    assert loss[-1][1] == pytest.approx(result.history[-1]["train"]["loss"], rel=1e-6)
