"""The shipped `offline-backbones` suite: each method label trains its own bundled micro backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vptune.bench.plan import run_config, selection_runs
from vptune.bench.suite import load_suite, resolve_task
from vptune.cli import main
from vptune.model import build_model

SUITE = "offline-backbones"
K = 10  # classes of the hand counts below (digits)

# label -> (backbone, method, trainable values by hand for 10 classes)
#   heads: ViT / Swin final width 192 -> 192*10 + 10 = 1,930; ConvNeXt final width 128 -> 1,290
#   vit vpt-deep p=10: 6 blocks x 10 x 192 = 11,520; swin vpt-deep p=10: 10 x 2 blocks x (24 + 48 + 96 + 192) = 7,200
#   convnext vpt-pad p=4 at 32x32: 3 x (40^2 - 32^2) = 1,728
EXPECTED = {
    "vit-linear": ("vptune_micro_vit", "linear", 1930),
    "vit-vpt-deep": ("vptune_micro_vit", "vpt-deep", 11520 + 1930),
    "swin-linear": ("vptune_micro_swin", "linear", 1930),
    "swin-vpt-deep": ("vptune_micro_swin", "vpt-deep", 7200 + 1930),
    "convnext-linear": ("vptune_micro_convnext", "linear", 1290),
    "convnext-vpt-pad": ("vptune_micro_convnext", "vpt-pad", 1728 + 1290),
}
FULL = {"vit-full": "vptune_micro_vit", "swin-full": "vptune_micro_swin", "convnext-full": "vptune_micro_convnext"}


def test_dry_run_json_plans_every_backbone_and_method(tmp_path, capsys):
    assert main(["bench", SUITE, "--out", str(tmp_path), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["suite"] == SUITE and plan["model"] == {"name": "vptune_micro_vit", "pretrained": True}
    assert [t["name"] for t in plan["tasks"]] == ["digits", "cells", "clevr_count", "textures", "landcover"]
    backbones = {m["name"]: m["overrides"]["model.name"] for m in plan["methods"]}
    assert backbones == {label: spec[0] for label, spec in EXPECTED.items()} | FULL
    # per task: 3 linear (3 grid points) + 6 others (2 points) selection runs, 9 methods x 2 seeds final runs
    assert plan["counts"] == {"select": 5 * (3 * 3 + 6 * 2), "final": 5 * 9 * 2, "total": 195, "done": 0}
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.parametrize("label", [*EXPECTED, *FULL])
def test_each_method_runs_on_its_backbone_with_exact_trainable_counts(label):
    suite = load_suite(SUITE)
    method = next(m for m in suite.methods if m.name == label)
    task = resolve_task(suite, suite.tasks[0])  # digits, 10 classes
    run = selection_runs(suite, task, method)[0]
    out = Path("/tmp/never-written")
    cfg = run_config(suite, task, method, run, out, False)
    assert run.folder(out).parent == out / "runs" / "digits" / label / "select"
    assert cfg.model.pretrained and cfg.train.epochs == 5 and cfg.train.batch_size == 64
    model = build_model(cfg.model.name, cfg.method.model_dump(), K, pretrained=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if label in FULL:
        assert cfg.model.name == FULL[label] and cfg.method.name == "full"
        assert trainable == sum(p.numel() for p in model.parameters())
    else:
        backbone, name, count = EXPECTED[label]
        assert (cfg.model.name, cfg.method.name, trainable) == (backbone, name, count)


def test_suite_trains_the_bundled_convnext_end_to_end(tmp_path):
    """One real method of the suite (cheapest backbone, 1 epoch, 1 seed, one 2-class task): results name it."""
    out = tmp_path / "bench"
    args = ["bench", SUITE, "--out", str(out), "--tasks", "cells", "--methods", "convnext-vpt-pad"]
    assert main([*args, "--set", "epochs=1", "--set", "seeds=[0]", "--no-report", "--no-progress"]) == 0
    results = [json.loads(p.read_text()) for p in sorted(out.glob("runs/**/result.json"))]
    assert len(results) == 3  # 2 grid points + 1 final run
    assert {r["backbone"] for r in results} == {"vptune_micro_convnext"}
    assert {r["method_config"]["name"] for r in results} == {"vpt-pad"}
    final = [r for r in results if r["phase"] == "final"]
    assert len(final) == 1 and 0.0 <= final[0]["metrics"]["test_top1"] <= 1.0
