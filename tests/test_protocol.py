"""The paper's protocol, point by point against the official code (issue 13): each case failed before its fix."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from conftest import tiny_model
from PIL import Image
from torch import nn

from vptune.bench.plan import final_runs, run_config, select, selection_runs
from vptune.bench.report import build_report
from vptune.bench.runner import build_plan, pick
from vptune.bench.suite import load_suite
from vptune.config import build_config
from vptune.data.transforms import preprocessing_config

# --- prompt dropout: one mask per image (official: dropout(prompts.expand(B, -1, -1))) -------------------------

DROPOUT_CASES = [
    {"name": "vpt-shallow", "prompt_length": 4, "dropout": 0.5},
    {"name": "vpt-deep", "prompt_length": 4, "dropout": 0.5},
    {"name": "vpt-deep", "prompt_length": 4, "dropout": 0.5, "sharing": "shared-intra"},
    {"name": "vpt-prefix", "prompt_length": 4, "dropout": 0.5},
    {"name": "vpt-shallow", "prompt_length": 4, "dropout": 0.5, "location": "prepend-pixel"},
]


@pytest.mark.parametrize("method", DROPOUT_CASES, ids=lambda m: "-".join(str(v) for v in m.values()))
def test_prompt_dropout_mask_differs_per_image(method):
    model = tiny_model(method).train()
    same = torch.randn(1, 3, 32, 32).expand(6, -1, -1, -1).contiguous()  # six copies of one image
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(same)
    # with one mask for the whole batch, identical images would give identical logits
    assert not all(torch.allclose(out[0], out[i]) for i in range(1, 6))
    model.eval()
    with torch.no_grad():
        out = model(same)
    assert all(torch.allclose(out[0], out[i], atol=1e-6) for i in range(1, 6))  # no dropout at eval


# --- method details: adapter GELU, Mlp-k head as the official mlp.py, full fine-tuning with dropout 0.1 ----------


def test_adapter_uses_gelu_by_default():
    model = tiny_model({"name": "adapter", "reduction": 8})
    acts = [m.act for m in model.modules() if type(m).__name__ == "Bottleneck"]
    assert acts and all(isinstance(a, nn.GELU) for a in acts)


def test_mlp_head_follows_official_mlp():
    head = tiny_model({"name": "mlp", "layers": 3}).head
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout"] * 2 + ["LinearHead"]
    assert head[3].p == pytest.approx(0.1)
    torch.manual_seed(0)
    stds = [tiny_model({"name": "mlp", "layers": 3}).head[0].weight.std().item() for _ in range(3)]
    assert np.mean(stds) == pytest.approx(math.sqrt(2 / 192), rel=0.05)  # kaiming normal, fan-out = 192


def test_full_finetuning_trains_with_vit_dropout():
    model = tiny_model({"name": "full"})
    vit = model.backbone
    assert vit.pos_drop.p == pytest.approx(0.1)
    assert all(b.mlp.drop1.p == pytest.approx(0.1) and b.mlp.drop2.p == pytest.approx(0.1) for b in vit.blocks)
    same = torch.randn(1, 3, 32, 32).expand(4, -1, -1, -1).contiguous()
    with torch.no_grad():
        out = model.train()(same)
    assert not torch.allclose(out[0], out[1])
    assert tiny_model({"name": "full", "dropout": 0.0}).backbone.pos_drop.p == 0.0


# --- selection ties: smaller lr, then larger wd, then shorter prompt -------------------------------------------


def _sel(lr, wd, top1, p=None):
    return {"lr": lr, "wd": wd, "grid_options": {} if p is None else {"prompt_length": p}, "dir": "x",
            "val_curve": [{"epoch": 0, "top1": top1}]}  # fmt: skip


TIE_CASES = [
    # (selection results in run order, expected (lr, wd, p))
    ([_sel(1.0, 0.0, 0.5), _sel(0.1, 0.0, 0.5)], (0.1, 0.0, None)),
    ([_sel(0.1, 0.0, 0.5), _sel(0.1, 0.01, 0.5)], (0.1, 0.01, None)),
    ([_sel(0.1, 0.0, 0.5, 50), _sel(0.1, 0.0, 0.5, 5), _sel(0.1, 0.0, 0.5, 10)], (0.1, 0.0, 5)),
    ([_sel(10.0, 0.0, 0.5, 1), _sel(0.1, 0.0, 0.5, 200)], (0.1, 0.0, 200)),  # lr first, then p
    ([_sel(0.1, 0.0, 0.4), _sel(5.0, 0.0, 0.6)], (5.0, 0.0, None)),  # no tie: the best score wins
]


@pytest.mark.parametrize(("results", "expected"), TIE_CASES)
def test_selection_ties_go_to_the_cheaper_point(results, expected):
    for order in (results, results[::-1]):
        chosen = select(order, "paper")
        assert (chosen["lr"], chosen["wd"], chosen["options"].get("prompt_length")) == expected


# --- splits, grid axes, batch rule, precision and resizing of the shipped paper suites ------------------------


def test_fgvc_final_runs_train_on_train_only():
    suite = load_suite("fgvc", data_root="/data")
    (task,), (method,) = pick(suite, ["flowers"], ["linear"])
    runs = final_runs(suite, task, method, {"lr": 0.1, "wd": 0.0})
    assert {r.train_split for r in runs} == {"train"} and {r.test_split for r in runs} == {"test"}
    assert {r.train_split for r in selection_runs(suite, task, method)} == {"train"}


def test_vtab1k_plan_searches_prompt_length_with_batch_64_for_long_prompts(tmp_path):
    plan = build_plan(load_suite("vtab1k"), tmp_path, tasks=["dtd"], methods=["vpt-deep", "adapter", "linear"])
    deep = [r for r in plan["runs"] if r["method"] == "vpt-deep" and r["phase"] == "select"]
    assert len(deep) == 10 * 4 * 6
    assert {r["options"]["prompt_length"] for r in deep} == {1, 5, 10, 50, 100, 200}
    assert all(r["batch_size"] == (64 if r["options"]["prompt_length"] >= 100 else 128) for r in deep)
    assert len({r["dir"] for r in deep}) == len(deep)  # one folder per grid point
    adapter = [r for r in plan["runs"] if r["method"] == "adapter" and r["phase"] == "select"]
    assert {r["options"]["reduction"] for r in adapter} == {8, 64, 256}
    methods = {m["name"]: m for m in plan["methods"]}
    assert methods["vpt-deep"]["grid"]["method"] == {"prompt_length": [1, 5, 10, 50, 100, 200]}


def test_cheaper_variant_fixes_p_and_is_labelled():
    suite = load_suite("vtab1k-fixed-p")
    deep = next(m for m in suite.methods if m.name == "vpt-deep")
    assert deep.grid.method == {} and deep.method["prompt_length"] == 10
    assert "NOT the paper" in suite.description and suite.data["interpolation"] == "bilinear"


@pytest.mark.parametrize("name", ["vtab1k", "fgvc"])
def test_paper_suites_train_fp32_and_vtab_resizes_bilinear(name, tmp_path):
    suite = load_suite(name, data_root="/data")
    (task,), (method,) = pick(suite, [suite.tasks[0].name], ["vpt-deep"])
    run = selection_runs(suite, task, method)[0]
    cfg = run_config(suite, task, method, run, tmp_path, False)
    assert cfg.train.amp == "off"
    assert cfg.method.prompt_length == 1 and cfg.optim.scale_lr is True
    if name == "vtab1k":
        assert cfg.data.interpolation == "bilinear"


@pytest.mark.parametrize("name", ["vtab1k", "fgvc", "vtab1k-fixed-p", "fgvc-fixed-p", "vtab1k-scale"])
def test_paper_suites_use_the_official_head_init_whatever_the_cli_default(name, tmp_path):
    from vptune.methods import parse_method_config

    assert parse_method_config({"name": "bias"}).head_init == "small"  # the CLI default (docs/default-optim.md)
    suite = load_suite(name, data_root="/data")
    for method in suite.methods:
        (task,), (spec,) = pick(suite, [suite.tasks[0].name], [method.name])
        cfg = run_config(suite, task, spec, selection_runs(suite, task, spec)[0], tmp_path, False)
        assert cfg.method.head_init == "official", method.name


def test_interpolation_option_reaches_the_preprocessing():
    vit = tiny_model({"name": "linear"}).backbone
    assert preprocessing_config(vit, interpolation="bilinear")["interpolation"] == "bilinear"
    assert preprocessing_config(vit, interpolation="bicubic")["interpolation"] == "bicubic"
    model_default = vit.pretrained_cfg.get("interpolation")
    assert preprocessing_config(vit)["interpolation"] == model_default  # "model": the timm data config's


def test_one_lr_rule_every_optimiser_scales_by_default(tmp_path):
    assert build_config().optim.scale_lr is True
    suite = load_suite("vtab1k", data_root="/data")
    (task,), (method,) = pick(suite, ["dtd"], ["full"])
    cfg = run_config(suite, task, method, selection_runs(suite, task, method)[0], tmp_path, False)
    assert cfg.optim.optimizer == "adamw" and cfg.optim.scale_lr is True


def test_vtab1k_scale_suite_plans_three_backbones(tmp_path):
    suite = load_suite("vtab1k-scale")
    (task,), methods = pick(suite, ["dtd"], None)
    cfgs = {m.name: run_config(suite, task, m, selection_runs(suite, task, m)[0], tmp_path, False) for m in methods}
    assert cfgs["vpt-deep-vit-h"].model.name == "vit_huge_patch14_224.orig_in21k"
    assert cfgs["vpt-deep-vit-h"].train.epochs == 50 and cfgs["vpt-deep-vit-b"].train.epochs == 100
    assert cfgs["linear-vit-l"].model.name == "vit_large_patch16_224.orig_in21k"


# --- the report shows the paper's figures only when suite, backbone and protocol match ----------------------


def _final(suite, protocol="paper", backbone="vit_base_patch16_224.orig_in21k", amp="off", device="cpu"):
    return {
        "suite": suite, "benchmark": "vtab1k", "protocol": protocol, "protocol_description": "p",
        "task": "cifar100", "group": "natural", "method": "vpt-deep", "paper_method": "vpt_deep",
        "method_config": {"name": "vpt-deep"}, "backbone": backbone, "phase": "final", "lr": 0.1, "wd": 0.0,
        "seed": 0, "train_fraction": 1.0, "config": {"train": {"amp": amp}},
        "provenance": {"vptune": "0", "torch": "2", "timm": "1", "git_commit": None, "device": device},
        "params": {"trainable_params": 10, "backbone_params": 1000}, "artifact_bytes": 1,
        "metrics": {"test_top1": 0.7},
    }  # fmt: skip


PAPER_MATCH_CASES = [
    (_final("vtab1k"), None),
    (_final("vtab1k-fixed-p"), "suite vtab1k-fixed-p"),
    (_final("vtab1k", protocol="best-val-epoch"), "protocol best-val-epoch"),
    (_final("vtab1k", backbone="vit_base_patch16_224.augreg_in21k"), "backbone vit_base_patch16_224.augreg"),
    (_final("vtab1k", amp="bf16", device="cuda"), "precision bf16"),
]


@pytest.mark.parametrize(("result", "why"), PAPER_MATCH_CASES)
def test_report_shows_paper_figures_only_when_settings_match(result, why, tmp_path):
    path = tmp_path / "runs" / "cifar100" / "vpt-deep" / "final" / "x" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result))
    rep = build_report(tmp_path)
    assert rep["paper"] is (why is None)
    assert (rep["paper_mismatch"] is None) if why is None else why in rep["paper_mismatch"]


# --- dSprites export: VTAB scales the 0/1 images to 0-255 (fake TFDS record) ----------------------------------


def test_tfds_export_scales_dsprites_to_255(tmp_path, monkeypatch):
    from vptune.data.tfds_export import export_tfds_task

    img = np.zeros((64, 64, 1), dtype=np.uint8)
    img[10:20, 10:20] = 1  # dSprites: a 0/1 sprite mask
    record = {"image": img, "label_x_position": 7, "label_orientation": 20}
    fake = types.SimpleNamespace(load=lambda *a, **k: [record, record], as_numpy=lambda ds: iter(ds))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    folder = export_tfds_task("dsprites_loc", tmp_path)
    first = (folder / "train800.txt").read_text().split()[0]
    pixels = np.asarray(Image.open(folder / first))
    assert pixels.max() == 255 and set(np.unique(pixels)) == {0, 255}
    assert (folder / "train800.txt").read_text().split()[1] == "3"  # x position 7 // 2
    cifar = {"image": np.full((4, 4, 3), 7, dtype=np.uint8), "label": 1}
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(
        load=lambda *a, **k: [cifar], as_numpy=lambda ds: iter(ds)))  # fmt: skip
    folder = export_tfds_task("cifar100", tmp_path)
    assert np.asarray(Image.open(folder / "images/train800_000000.png")).max() == 7  # other tasks untouched
