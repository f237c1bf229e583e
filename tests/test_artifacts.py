"""Task artifacts: hash checks, damaged files, tensors only for the trainable parts."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file

from vptune.errors import ArtifactError, DataError
from vptune.tasks import load_task, read_task, save_task

PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
SRC = {"pretrained": False, "weights": None, "img_size": None}


@pytest.fixture
def saved(tmp_path):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2}, 3)
    save_task(
        tmp_path / "t",
        model,
        classes=["a", "b", "c"],
        preprocessing=PRE,
        backbone_source=SRC,
        metrics={"test_top1": 0.5},
    )
    return tmp_path / "t", model


def test_artifact_holds_only_prompts_and_head(saved):
    path, _ = saved
    assert set(load_file(str(path / "task.safetensors"))) == {"method.prompts", "head.weight", "head.bias"}
    meta = json.loads((path / "task.json").read_text())
    for key in ("format_version", "method", "backbone", "preprocessing", "classes", "metrics", "vptune_version"):
        assert key in meta
    assert len(meta["backbone"]["hash"]) == 16


def test_backbone_hash_mismatch_is_explained(saved, tmp_path):
    path, model = saved
    weights = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    state = {k: v.clone() + 0.001 for k, v in model.backbone.state_dict().items()}
    save_file(state, str(weights))
    with pytest.raises(ArtifactError, match="weights hash .* but the backbone at hand"):
        load_task(path, weights=str(weights))


def test_backbone_weights_from_local_file_round_trip(saved, tmp_path):
    path, model = saved
    from safetensors.torch import save_file

    weights = tmp_path / "same.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(weights))
    loaded, _ = load_task(path, weights=str(weights))
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "task.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "task.json").write_text('{"format": "other"}'), "not a vptune task"),
        (lambda p: (p / "task.safetensors").unlink(), "incomplete"),
        (lambda p: (p / "task.safetensors").write_bytes(b"garbage"), "damaged"),
    ],
)
def test_damaged_artifacts_give_clear_errors(saved, damage, message):
    path, _ = saved
    damage(path)
    with pytest.raises(ArtifactError, match=message):
        load_task(path)


def test_future_format_version_asks_for_upgrade(saved):
    path, _ = saved
    meta = json.loads((path / "task.json").read_text())
    meta["format_version"] = 99
    (path / "task.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="upgrade vptune"):
        read_task(path)


def test_tensor_set_mismatch_is_reported(saved):
    path, _ = saved
    meta = json.loads((path / "task.json").read_text())
    meta["method"] = {"name": "linear"}
    (path / "task.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="does not match method 'linear'"):
        load_task(path)


def test_missing_weights_file_is_a_data_error(saved):
    with pytest.raises(DataError, match="does not exist"):
        load_task(saved[0], weights="/nowhere/w.safetensors")
