"""The `vptune` CLI end to end on the micro ViT (random init) and a generated image folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vptune.cli import main

TRAIN = [
    "train",
    "--model",
    "vptune_micro_vit",
    "--no-pretrained",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--no-progress",
]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_json_reports_parameter_counts(image_folder, capsys):
    code, out, _ = run_cli(
        [
            *TRAIN,
            "--data",
            f"folder:{image_folder}",
            "--method",
            "vpt-deep",
            "--prompt-length",
            "4",
            "--dry-run",
            "--json",
        ],
        capsys,
    )
    info = json.loads(out)
    assert code == 0
    assert info["method_params"] == 6 * 4 * 192 and info["head_params"] == 192 * 3 + 3
    assert info["splits"] == {"train": 18, "val": 6, "test": 9} and info["num_classes"] == 3


def test_train_inspect_predict_eval(image_folder, tmp_path, capsys):
    out_dir = tmp_path / "task"
    code, out, _ = run_cli(
        [
            *TRAIN,
            "--data",
            f"folder:{image_folder}",
            "--method",
            "vpt-shallow",
            "--prompt-length",
            "3",
            "--lr",
            "0.05",
            "--out",
            out_dir,
            "--json",
        ],
        capsys,
    )
    assert code == 0 and "test_top1" in json.loads(out)["metrics"]

    code, out, _ = run_cli(["inspect", out_dir, "--json"], capsys)
    info = json.loads(out)
    for key in (
        "method",
        "backbone",
        "num_classes",
        "trainable_params",
        "backbone_params",
        "artifact_bytes",
        "metrics",
    ):
        assert key in info
    assert info["method"] == "vpt-shallow" and info["num_classes"] == 3 and info["artifact_bytes"] < 20_000

    image = next((image_folder / "test" / "dog").glob("*.png"))
    code, out, _ = run_cli(["predict", out_dir, image, "--top-k", "2", "--json"], capsys)
    preds = json.loads(out)
    assert code == 0 and len(preds[0]["predictions"]) == 2
    assert abs(sum(p["score"] for p in preds[0]["predictions"])) <= 1.0 + 1e-6

    code, out, _ = run_cli(["eval", out_dir, "--data", f"folder:{image_folder}", "--json"], capsys)
    assert code == 0 and json.loads(out)["n"] == 9


def test_yaml_config_and_set_override(image_folder, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model: {{name: vptune_micro_vit, pretrained: false}}\ndata: {{spec: 'folder:{image_folder}'}}\n"
        "method: {name: vpt-deep, prompt_length: 2}\n"
    )
    code, out, _ = run_cli(["train", "--config", cfg, "--set", "method.prompt_length=5", "--dry-run", "--json"], capsys)
    assert code == 0 and json.loads(out)["method"]["prompt_length"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--no-pretrained", "--model", "vptune_micro_vit", "--data", "folder:/no/such/dir"],
            "does not exist",
        ),
        (["train", "--model", "not_a_model_xyz", "--data", "folder:{data}"], "not a timm model"),
        (
            ["train", "--model", "vgg11", "--no-pretrained", "--data", "folder:{data}", "--dry-run"],
            "is not supported",
        ),
        (
            ["train", "--model", "vptune_micro_vit", "--weights", "/no/weights.safetensors", "--data", "folder:{data}"],
            "does not exist",
        ),
        (["train", "--method", "linear", "--prompt-length", "3", "--data", "folder:/x"], "method.prompt_length"),
        (["train", "--model", "vptune_micro_vit", "--no-pretrained"], "no data given"),
        (["inspect", "/no/task"], "not a task folder"),
        (["predict", "/no/task", "x.png"], "not a task folder"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_2(args, message, image_folder, capsys):
    code, _, err = run_cli([a.format(data=image_folder) for a in args], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_image_for_predict(image_folder, tmp_path, capsys):
    out_dir = tmp_path / "t"
    assert (
        run_cli(
            [*TRAIN, "--data", f"folder:{image_folder}", "--method", "linear", "--epochs", "1", "--out", out_dir],
            capsys,
        )[0]
        == 0
    )
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code, _, err = run_cli(["predict", out_dir, bad], capsys)
    assert code == 2 and "bad.jpg" in err


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "vptune.cli", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--prompt-length" in res.stdout and "--dry-run" in res.stdout
