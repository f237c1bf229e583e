"""Task folders and weight files from elsewhere: no code runs, every defect is one ArtifactError naming the field."""

from __future__ import annotations

import json
import os
import pathlib
import stat
from pathlib import Path

import pytest
import torch
from conftest import TINY, tiny_model
from safetensors.torch import load_file, save_file

from vptune.backbones import create_vit
from vptune.backbones.weights import read_state_dict
from vptune.engine.io import atomic_write, current_umask
from vptune.errors import ArtifactError, DataError
from vptune.predict import Predictor
from vptune.tasks import load_task, read_task, save_task
from vptune.tasks.artifact import file_sha256
from vptune.tasks.schema import Preprocessing

LEGACY = Path(__file__).parent / "data" / "artifact_v1"
PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
SRC = {"pretrained": False, "weights": None, "img_size": None}


class Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def saved(tmp_path):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2}, 3)
    save_task(tmp_path / "t", model, classes=["a", "b", "c"], preprocessing=PRE, backbone_source=SRC)
    return tmp_path / "t"


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "pwned"
    file = tmp_path / "weights.pth"
    torch.save({"state_dict": Payload(marker)}, file)
    return file, marker


def edit_meta(folder: Path, change) -> None:
    meta = json.loads((folder / "task.json").read_text())
    change(meta)
    (folder / "task.json").write_text(json.dumps(meta))


def test_weights_path_in_task_json_is_not_opened_without_opt_in(saved, evil):
    file, marker = evil
    edit_meta(saved, lambda m: m["backbone"].update(weights=str(file), pretrained=True))
    with pytest.raises(ArtifactError, match="backbone.weights.*--weights FILE.*--trust-task-weights"):
        load_task(saved)
    with pytest.raises(ArtifactError, match="--trust-task-weights"):
        Predictor.from_dir(saved, device="cpu")
    with pytest.raises(DataError, match="refused .*never unpickles code"):
        load_task(saved, trust_task_weights=True)  # opted in: still read without unpickling
    assert not marker.exists()


@pytest.mark.parametrize("route", ["create_vit", "read_state_dict", "load_task"])
def test_pickle_payload_never_runs(saved, evil, route):
    file, marker = evil
    with pytest.raises(DataError, match="refused"):
        if route == "create_vit":
            create_vit(TINY, pretrained=False, weights=file)
        elif route == "read_state_dict":
            read_state_dict(file)
        else:
            load_task(saved, weights=str(file))
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_local_weights_round_trip_with_exact_keys(tmp_path, suffix):
    vit = create_vit(TINY, pretrained=False)
    state = {k: v.clone() + 0.01 for k, v in vit.state_dict().items()}
    file = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(file))
    else:
        torch.save({"model": state}, file)  # nested like a training checkpoint
    loaded = create_vit(TINY, weights=file)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    del state["blocks.0.attn.qkv.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(DataError, match=r"missing keys \['blocks.0.attn.qkv.weight'\]"):
        create_vit(TINY, weights=tmp_path / "partial.pth")


@pytest.mark.parametrize("name", ["vpt_deep", "lora"])
def test_artifacts_saved_before_the_schema_still_load(name):
    model, task = load_task(LEGACY / name)
    expected = load_file(str(LEGACY / f"{name}.expected.safetensors"))
    with torch.no_grad():
        assert torch.allclose(model(expected["x"]), expected["logits"], atol=1e-5)
    assert task.classes[0] == "c0"


BAD_META = [  # (edit of task.json, words the one error must contain)
    (lambda m: m.update(classes="abc"), "field 'classes'"),
    (lambda m: m.update(classes=[1, 2, 3]), "field 'classes.0'"),
    (lambda m: m.update(classes=["a", "a", "b"]), "repeated"),
    (lambda m: m.pop("preprocessing"), "field 'preprocessing'"),
    (lambda m: m["preprocessing"].update(std=[0, 1, 1]), "field 'preprocessing.std'"),
    (lambda m: m["preprocessing"].update(interpolation="lanczos"), "field 'preprocessing.interpolation'"),
    (lambda m: m["backbone"].update(hash=7), "field 'backbone.hash'"),
    (lambda m: m["method"].pop("name"), "field 'method.name'"),
    (lambda m: m["method"].update(prompt_length=-3), "field 'method'"),
    (lambda m: m.update(format_version="x"), "field 'format_version'"),
    (lambda m: m.update(format_version=99), "upgrade vptune"),
    (lambda m: m["params"].pop("trainable_params"), "field 'params.trainable_params'"),
    (lambda m: m.update(format="other"), "not a vptune task file"),
]


@pytest.mark.parametrize("edit,words", BAD_META)
def test_bad_task_json_is_one_artifact_error(saved, edit, words):
    edit_meta(saved, edit)
    with pytest.raises(ArtifactError, match="task.json") as err:
        load_task(saved)
    assert words in str(err.value)


@pytest.mark.parametrize(
    "content,words",
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format": "vptune-task"', "not valid JSON"),
        (b" " * (9 * 1024 * 1024), "over the"),
    ],
)
def test_unreadable_task_json(saved, content, words):
    (saved / "task.json").write_bytes(content)
    with pytest.raises(ArtifactError, match=words):
        read_task(saved)


def tamper(folder: Path, change) -> None:
    """Rewrite the tensors (and their recorded sha256, so only the tensor checks can catch it)."""
    tensors = load_file(str(folder / "task.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "task.safetensors"))
    edit_meta(folder, lambda m: m["tensors"].update(sha256=file_sha256(folder / "task.safetensors")))


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda t: t["method.prompts"].__setitem__((0, 0, 0), float("nan")), "'method.prompts' holds NaN"),
        (lambda t: t.update({"head.weight": t["head.weight"].double()}), "'head.weight' is F64"),
        (lambda t: t.update({"head.bias": torch.zeros(5)}), "'head.bias' is F32[5], the task's method needs F32[3]"),
        (lambda t: t.update({"extra": torch.zeros(1)}), "unexpected tensors ['extra']"),
        (lambda t: t.pop("head.bias"), "missing tensors ['head.bias']"),
    ],
)
def test_bad_tensors_are_refused_before_loading(saved, change, words):
    tamper(saved, change)
    with pytest.raises(ArtifactError) as err:
        load_task(saved)
    assert words in str(err.value) and "task.safetensors" in str(err.value)


def test_new_tensors_beside_old_metadata_are_detected(saved, tmp_path):
    """A crash between writing the tensors and task.json: the folder refuses to load, naming the cause."""
    other = tiny_model({"name": "vpt-deep", "prompt_length": 2}, 3)
    with torch.no_grad():
        other.head.bias.fill_(1.0)
    save_file({k: v.contiguous() for k, v in other.trainable_state_dict().items()}, str(saved / "task.safetensors"))
    with pytest.raises(ArtifactError, match="tensors.sha256.*mixes two saves"):
        load_task(saved)


def test_files_get_umask_permissions_and_stale_temps_go(tmp_path):
    stale = tmp_path / ".task.json.abc123.tmp"
    stale.write_text("left by a crash")
    os.utime(stale, (0, 0))
    fresh = tmp_path / ".task.json.def456.tmp"  # another writer's, still in progress
    fresh.write_text("")
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "task.json", lambda tmp: Path(tmp).write_text("{}"))
        assert stat.S_IMODE((tmp_path / "task.json").stat().st_mode) == 0o644 == 0o666 & ~current_umask()
    finally:
        os.umask(old)
    assert not stale.exists() and fresh.exists()


def test_full_disk_is_an_artifact_error_and_keeps_the_old_task(saved, monkeypatch):
    from safetensors import SafetensorError

    before = (saved / "task.safetensors").read_bytes()

    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr("vptune.tasks.artifact.save_file", no_space)
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2}, 3)
    with pytest.raises(ArtifactError, match="could not write .*task.safetensors.*disk full"):
        save_task(saved, model, classes=["a", "b", "c"], preprocessing=PRE, backbone_source=SRC)
    assert (saved / "task.safetensors").read_bytes() == before
    assert not list(saved.glob(".*.tmp"))
    load_task(saved)


def test_preprocessing_model_validates_the_dict():
    assert Preprocessing.model_validate(PRE).input_size == [32, 32]
    with pytest.raises(ValueError, match="augment"):
        Preprocessing.model_validate({**PRE, "augment": "mixup"})
