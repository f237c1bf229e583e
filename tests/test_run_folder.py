"""Output folders: named after data and method, a finished task never overwritten silently, Ctrl-C messages."""

from __future__ import annotations

import json

import pytest

from vptune.cli import main
from vptune.config import build_config
from vptune.engine import trainer
from vptune.run_folder import default_out

BASE = ["train", "--model", "vptune_micro_vit", "--no-pretrained", "--epochs", "1", "--batch-size", "8"]


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("spec", "method", "expected"),
    [
        ("offline:digits", "vpt-deep", "runs/digits-vpt-deep"),
        ("folder:/data/pets/", "linear", "runs/pets-linear"),
        ("csv:/x/labels.csv", "full", "runs/labels-full"),
        ("vtab1k:/data/vtab-1k/cifar", "vpt-shallow", "runs/cifar-vpt-shallow"),
        ("folder:/data/my pets", "lora", "runs/my_pets-lora"),
    ],
)
def test_default_out_is_named_after_data_and_method(spec, method, expected):
    assert default_out(spec, method) == expected


def test_build_config_uses_the_named_default_unless_out_is_given():
    assert build_config(flags={"data.spec": "offline:digits", "method.name": "linear"}).out == "runs/digits-linear"
    assert build_config(flags={"data.spec": "offline:digits", "out": "here"}).out == "here"


def _lines(path):
    return path.read_text().splitlines()


def test_finished_task_is_never_overwritten_without_overwrite(image_folder, tmp_path, capsys):
    out = tmp_path / "task"
    data = ["--data", f"folder:{image_folder}", "--out", out]
    assert run([*BASE, *data, "--method", "linear"], capsys)[0] == 0
    meta_before = (out / "task.json").read_text()
    metrics_before = _lines(out / "metrics.jsonl")

    # the identical run again: says so, trains nothing, writes nothing
    code, stdout, _ = run([*BASE, *data, "--method", "linear"], capsys)
    assert code == 0 and "already holds this finished run" in stdout
    assert (out / "task.json").read_text() == meta_before and _lines(out / "metrics.jsonl") == metrics_before

    # another method into the same folder: refused, the finished task untouched
    code, _, err = run([*BASE, *data, "--method", "vpt-shallow", "--prompt-length", "2"], capsys)
    assert code == 2 and "holds a finished task of another run (method linear" in err and "--overwrite" in err
    assert (out / "task.json").read_text() == meta_before

    # --overwrite replaces it, and metrics.jsonl then holds only the new run
    code, stdout, _ = run([*BASE, *data, "--method", "vpt-shallow", "--prompt-length", "2", "--overwrite"], capsys)
    assert code == 0 and json.loads((out / "task.json").read_text())["method"]["name"] == "vpt-shallow"
    assert len(_lines(out / "metrics.jsonl")) == len(metrics_before)


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        (False, "interrupted: stopped before the first checkpoint: nothing was saved; run the command again"),
        (True, "interrupted: run the same command again to resume"),
    ],
)
def test_ctrl_c_in_train_says_what_was_kept(checkpoint, message, image_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "t"

    def interrupted_fit(cfg, **kwargs):
        if checkpoint:
            out.mkdir()
            (out / "checkpoint.pt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit", interrupted_fit)
    code, _, err = run([*BASE, "--data", f"folder:{image_folder}", "--method", "linear", "--out", out], capsys)
    assert code == 130 and err.strip() == f"vptune train: {message}"


def test_ctrl_c_in_tune_prints_one_line_without_optunas_traceback(image_folder, tmp_path, monkeypatch, capsys):
    def interrupted_fit(cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit", interrupted_fit)
    args = ["tune", "--model", "vptune_micro_vit", "--no-pretrained", "--data", f"folder:{image_folder}"]
    code, _, err = run(
        [
            *args,
            "--method",
            "linear",
            "--epochs",
            "1",
            "--lrs",
            "0.1",
            "--wds",
            "0",
            "--out",
            tmp_path / "tn",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 130 and "Traceback" not in err and "failed with" not in err
    assert "interrupted: finished trials are kept in" in err and "run the same command again" in err
