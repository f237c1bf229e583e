"""The offline default: bundled micro-ViT weights and the demo's report, end to end (small settings)."""

from __future__ import annotations

import json

import timm

from vptune.backbones import weights_hash
from vptune.backbones.micro import MICRO_WEIGHTS, MODEL_CARD
from vptune.demo import run_demo


def test_bundled_weights_load_by_name_and_match_the_model_card():
    card = json.loads(MODEL_CARD.with_suffix(".json").read_text())
    assert MICRO_WEIGHTS.stat().st_size <= 10_000_000
    model = timm.create_model("vptune_micro_vit", pretrained=True)
    assert weights_hash(model) == card["weights_hash"]
    assert weights_hash(model) != weights_hash(timm.create_model("vptune_micro_vit", pretrained=False))
    assert {row["task"] for row in card["linear_probe"]} >= {"digits", "dsprites_location"}


def test_demo_writes_report_and_predicts_from_an_artifact(tmp_path):
    report = run_demo(tmp_path, tasks=("digits",), methods=("linear", "vpt-shallow"), epochs=1, progress=False)
    assert [r["method"] for r in report["rows"]] == ["linear", "vpt-shallow"]
    for row in report["rows"]:
        assert 0.0 <= row["test_top1"] <= 1.0 and row["artifact_bytes"] > 0
    assert report["rows"][1]["trainable_params"] == 10 * 192 + 192 * 10 + 10
    for name in ("report.md", "report.json", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(report["predictions"]) == 4 and all(p["predicted"] for p in report["predictions"])
    md = (tmp_path / "report.md").read_text()
    assert "offline:digits" in md and "vpt-shallow" in md
    # re-running skips finished runs (same numbers, no retraining)
    again = run_demo(tmp_path, tasks=("digits",), methods=("linear", "vpt-shallow"), epochs=1, progress=False)
    assert [r["test_top1"] for r in again["rows"]] == [r["test_top1"] for r in report["rows"]]
