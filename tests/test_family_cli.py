"""Every backbone family through the CLI dry run (exact counts) and the task artifact round trip."""

from __future__ import annotations

import json

import pytest
import torch

from vptune.cli import main
from vptune.model import build_model
from vptune.tasks import load_task, save_task

SRC = {"pretrained": False, "weights": None, "img_size": None}
PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}


@pytest.mark.parametrize(
    "model,method,p,count",
    [
        ("swin_tiny_patch4_window7_224", "vpt-deep", 10, 10 * (2 * 96 + 2 * 192 + 6 * 384 + 2 * 768)),  # 44,160
        ("convnext_tiny", "vpt-pad", 5, 13_740),
        ("resnet18", "vpt-pad", 5, 13_740),
        ("vit_base_patch16_224.mae", "vpt-deep", 10, 12 * 10 * 768),
    ],
)
def test_dry_run_prints_exact_counts(model, method, p, count, image_folder, capsys):
    args = ["train", "--model", model, "--no-pretrained", "--method", method, "--prompt-length", str(p)]
    code = main([*args, "--data", f"folder:{image_folder}", "--dry-run", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["method_params"] == count


@pytest.mark.parametrize(
    "name,method",
    [
        ("vptune_micro_swin", {"name": "vpt-deep", "prompt_length": 2}),
        ("vptune_micro_swin", {"name": "partial", "k": 3}),
        ("vptune_micro_convnext", {"name": "vpt-pad", "prompt_length": 2}),
        ("vptune_micro_resnet", {"name": "bias"}),
        ("vptune_micro_resnet", {"name": "partial", "k": 2}),  # BatchNorm statistics of trained blocks travel too
    ],
)
def test_save_load_predict_round_trip(name, method, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, method, 3, pretrained=False)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))  # "trained": differs from any fresh init
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # updates the running statistics of trained BatchNorms
    model.eval()
    save_task(tmp_path / "t", model, classes=["a", "b", "c"], preprocessing=PRE, backbone_source=SRC)
    loaded, _ = load_task(tmp_path / "t")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


@pytest.mark.parametrize(
    "name,methods",
    [
        ("vptune_micro_swin", [{"name": "vpt-deep", "prompt_length": 2}, {"name": "linear"}]),
        ("vptune_micro_convnext", [{"name": "vpt-pad", "prompt_length": 2}, {"name": "linear"}]),
    ],
)
def test_mixed_batch_equals_each_task_alone(name, methods, tmp_path):
    from vptune.tasks.multitask import MultiTaskModel

    models = {}
    for i, method in enumerate(methods):
        torch.manual_seed(i)
        models[f"t{i}"] = build_model(name, method, 3, pretrained=False).eval()
        save_task(tmp_path / f"t{i}", models[f"t{i}"], classes=["a", "b", "c"], preprocessing=PRE, backbone_source=SRC)
    bank = MultiTaskModel.from_dirs({k: tmp_path / k for k in models})
    images = torch.randn(4, 3, 32, 32)
    ids = ["t0", "t1", "t1", "t0"]
    with torch.no_grad():
        mixed = bank(images, ids)
        for row, task in enumerate(ids):
            torch.testing.assert_close(mixed[row], models[task](images[row : row + 1])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "model,method,first,last",
    [
        ("vit_base_patch16_224.mae", "linear", 50.0, 0.0025),  # official linear_mae
        ("vit_base_patch16_224.orig_in21k", "linear", 50.0, 0.05),  # the paper's default SGD grid
        ("resnet50", "vpt-pad", 5.0, 0.01),  # official prompt_resnet
    ],
)
def test_family_lr_grids(model, method, first, last):
    from vptune.bench.suite import Suite

    suite = Suite(name="s", benchmark="offline", model={"name": model}, tasks=["digits"], methods=[{"name": method}])
    lrs = suite.methods[0].grid.lr
    assert lrs[0] == first and lrs[-1] == last


@pytest.mark.parametrize(
    "name,method",
    [
        ("vptune_micro_swin", {"name": "vpt-deep", "prompt_length": 2, "dropout": 0.0}),
        ("vptune_micro_convnext", {"name": "vpt-pad", "prompt_length": 2}),
        ("vptune_micro_resnet", {"name": "linear"}),
    ],
)
def test_blocks_split_at_any_index_equal_the_whole_run(name, method):
    """The feature cache runs blocks 0..k then k..depth: stage transitions must land on the same side."""
    torch.manual_seed(0)
    model = build_model(name, method, 3, pretrained=False).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = model.embed(images)
        whole = model.forward_blocks(x)
        for cut in range(model.arch.depth + 1):
            assert torch.equal(model.forward_blocks(model.forward_blocks(x, 0, cut), cut), whole), cut
