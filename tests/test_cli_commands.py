"""Commands a newcomer reaches for: eval without --data, predict on folders/globs with --csv, bad images counted,
`vptune config`, did-you-mean, bench dry runs that name missing folders, train --from-best."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import make_image_folder

from vptune.cli import main
from vptune.config_keys import config_keys
from vptune.tune import BEST_FILE


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def image_folder_module(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="module")
def task_dir(image_folder_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmd") / "task"
    args = ["train", "--model", "vptune_micro_vit", "--no-pretrained", "--epochs", "1", "--batch-size", "8"]
    args += ["--data", f"folder:{image_folder_module}", "--method", "linear", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    return out


def test_eval_without_data_uses_the_tasks_spec(task_dir, capsys):
    code, out, _ = run(["eval", task_dir, "--json"], capsys)
    assert code == 0 and json.loads(out)["n"] == 9


def test_predict_folders_globs_csv_and_skipped_count(task_dir, image_folder_module, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    test = image_folder_module / "test"
    target = tmp_path / "p.csv"
    args = ["predict", task_dir, test / "cat", f"{test}/dog/*.png", bad, "--top-k", "2", "--csv", target]
    code, _, err = run(args, capsys)
    assert code == 2 and "bad.png" in err and not target.exists()  # bad image without --skip-bad-images

    code, out, _ = run([*args, "--skip-bad-images"], capsys)
    rows = list(csv.DictReader(target.open()))
    assert code == 0 and "wrote 6 predictions" in out and "skipped 1 unreadable images" in out
    assert len(rows) == 7 and rows[-1]["image"] == str(bad) and rows[-1]["error"]
    assert {r["label_1"] for r in rows[:-1]} <= {"cat", "dog", "fox"} and all(r["score_2"] for r in rows[:-1])

    code, _, err = run([*args, "--skip-bad-images"], capsys)
    assert code == 2 and "--overwrite" in err  # an existing CSV is never replaced silently


def test_eval_reports_skipped_images(task_dir, capsys):
    code, out, _ = run(["eval", task_dir, "--skip-bad-images"], capsys)
    assert code == 0 and "skipped 0 unreadable images" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "vpt-dep"], "did you mean 'vpt-deep'?"),
        (["--set", "train.epoch=3"], "did you mean 'train.epochs'?"),
        (["--set", "method.prompt_lenght=3"], "did you mean 'method.prompt_length'?"),
        (["--set", "optm.lr=1"], "did you mean 'optim'?"),
    ],
)
def test_mistyped_names_get_the_closest_one(args, message, capsys):
    code, _, err = run(["train", "--data", "offline:digits", "--dry-run", *args], capsys)
    assert code == 2 and message in err


def test_config_lists_every_key(capsys):
    code, out, _ = run(["config", "--json"], capsys)
    keys = {r["key"]: r for r in json.loads(out)}
    assert code == 0
    for key in ("model.name", "data.spec", "optim.scale_lr", "train.epochs", "out", "method.name", "method.rank"):
        assert key in keys and keys[key]["description"], key
    assert keys["train.epochs"]["default"] == 10 and keys["train.epochs"]["type"] == "int"
    assert keys["optim.scale_lr"]["default"] is True
    from vptune.config import RunConfig
    from vptune.methods import METHODS

    expected = {"out", "method.name"} | {
        f"{section}.{name}"
        for section in ("model", "data", "optim", "train", "seg")
        for name in RunConfig.model_fields[section].annotation.model_fields
    }
    expected |= {f"method.{name}" for cls in METHODS.values() for name in cls.config_cls.model_fields if name != "name"}
    assert set(keys) == expected and {r["key"] for r in config_keys()} == expected


@pytest.mark.parametrize("root", [None, "empty"])
def test_bench_dry_run_names_missing_task_folders_without_out(root, tmp_path, capsys):
    args = ["bench", "vtab1k", "--dry-run", "--tasks", "cifar100,dtd"]
    if root:
        (tmp_path / "dtd").mkdir()
        args += ["--data-root", tmp_path]
    code, _, err = run(args, capsys)
    assert code == 1 and "vptune data check --suite vtab1k" in err and "tfds_export" in err
    assert ("2 task folders missing" if root is None else "1 task folders missing") in err and "cifar100" in err


def test_bench_needs_out_unless_dry_run(capsys):
    code, _, err = run(["bench", "offline-quick"], capsys)
    assert code == 2 and "pass --out DIR" in err


def test_train_from_best(image_folder_module, tmp_path, capsys):
    best = {
        "task": "x",
        "method": "vpt-shallow",
        "optim": {"optimizer": "sgd", "lr": 0.3, "weight_decay": 0.001, "scale_lr": False},
        "method_options": {"prompt_length": 3},
        "val_top1": 0.5,
    }
    (tmp_path / BEST_FILE).write_text(json.dumps(best))
    base = ["train", "--model", "vptune_micro_vit", "--no-pretrained", "--data", f"folder:{image_folder_module}"]
    code, out, _ = run([*base, "--from-best", tmp_path, "--dry-run", "--json"], capsys)
    cfg = json.loads(out)["config"]
    assert code == 0 and cfg["method"]["name"] == "vpt-shallow" and cfg["method"]["prompt_length"] == 3
    assert cfg["optim"] == {**cfg["optim"], **best["optim"]}
    code, out, _ = run([*base, "--from-best", tmp_path, "--lr", "0.7", "--dry-run", "--json"], capsys)
    assert json.loads(out)["config"]["optim"]["lr"] == 0.7  # flags still win
    code, _, err = run([*base, "--from-best", tmp_path, "--method", "linear", "--dry-run"], capsys)
    assert code == 2 and "tuned for method vpt-shallow, not linear" in err


@pytest.mark.parametrize(
    ("method", "options", "error"),
    [
        ("vpt-deep", {"prompt_length": 7, "head_init": "small"}, None),
        ("linear", {"head_init": "small"}, None),
        ("adapter", {}, "which suite offline-quick does not run"),
    ],
)
def test_bench_from_best_replaces_the_tuned_methods_grid(tmp_path, capsys, method, options, error):
    best = {
        "task": "x",
        "method": method,
        "optim": {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "scale_lr": False},
        "method_options": options,
        "val_top1": 0.5,
    }
    (tmp_path / BEST_FILE).write_text(json.dumps(best))
    code, out, err = run(["bench", "offline-quick", "--from-best", tmp_path, "--dry-run", "--json"], capsys)
    if error:
        assert code == 2 and error in err
        return
    plan = json.loads(out)
    assert code == 0 and "not the paper's protocol" in plan["protocol_description"]
    by_name = {m["name"]: m for m in plan["methods"]}
    tuned = by_name[method]
    assert tuned["optimizer"] == "adamw" and tuned["grid"]["lr"] == [0.003] and tuned["grid"]["wd"] == [0.01]
    assert tuned["method"] == {"name": method, **options}
    other = by_name["linear" if method == "vpt-deep" else "vpt-deep"]
    assert len(other["grid"]["lr"]) == 2  # the other method keeps the suite's grid
    assert plan["counts"]["select"] == 2 * (1 + 2)  # 2 tasks x (1 tuned point + the other method's 2 points)
