"""Export: every method's task -> one ONNX / TorchScript file that reproduces PyTorch's logits (dynamic batch)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, make_image_folder, tiny_model
from PIL import Image

from vptune.export import ExportError, check_export, export_task, format_names, sidecar_path
from vptune.model import build_model
from vptune.predict import Predictor
from vptune.tasks import load_task, save_task

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install 'vptune[export]'")
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install 'vptune[export]'")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # the torchscript format's own loads

CLASSES = ["cat", "dog", "fox"]
PRE = {"input_size": [32, 32], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bilinear"}
PRE = {**PRE, "augment": "none"}
SRC = {"pretrained": False, "weights": None, "img_size": None}

# the six methods; every trainable tensor is perturbed before saving (as training would), so LoRA's B,
# zero at initialisation, is not zero and the merge is exercised
METHODS = {
    "vpt-shallow": {"name": "vpt-shallow", "prompt_length": 3},
    "vpt-deep": {"name": "vpt-deep", "prompt_length": 2},
    "vpt-prefix": {"name": "vpt-prefix", "prompt_length": 2},
    "linear": {"name": "linear"},
    "lora": {"name": "lora", "rank": 2, "targets": ["qkv", "fc1"]},
    "full": {"name": "full"},
}


def trained_like(method: dict, seed: int = 0, pretrained: bool = False):
    torch.manual_seed(seed)
    model = build_model(TINY, method, len(CLASSES), pretrained=pretrained)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def save(path, method: dict, data_spec: str | None, seed: int = 0, pretrained: bool = False):
    model = trained_like(method, seed, pretrained)
    source = {**SRC, "pretrained": pretrained}
    train_config = {"data": {"spec": data_spec}} if data_spec else {}
    save_task(path, model, classes=CLASSES, preprocessing=PRE, backbone_source=source, train_config=train_config)
    return path


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory) -> str:
    return "folder:" + str(make_image_folder(tmp_path_factory.mktemp("data"), classes=CLASSES, size=40))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, data_spec):
    """One task per method; vpt-deep's backbone is the bundled pretrained micro ViT, the others random."""
    root = tmp_path_factory.mktemp("tasks")
    return {name: save(root / name, m, data_spec, pretrained=name == "vpt-deep") for name, m in METHODS.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tasks):
    """``exported(method, fmt)``: the checked export of a task, made once per module (dynamo export is slow)."""
    root, cache = tmp_path_factory.mktemp("exported"), {}

    def get(method: str, fmt: str):
        if (method, fmt) not in cache:
            cache[method, fmt] = export_task(tasks[method], fmt, root / f"{method}.{fmt}")
        return cache[method, fmt]

    return get


def run_file(fmt: str, path, batch: torch.Tensor) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": batch.numpy()})[0]
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(batch).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("method", list(METHODS))
def test_export_matches_pytorch_for_batch_1_and_3(one_thread, tasks, exported, method, fmt):
    result = exported(method, fmt)
    out = result.path
    assert result.check["max_abs_diff"] <= 1e-4 and result.check["images"] == 8
    assert "the task's data 'folder:" in result.check["source"]
    model, _ = load_task(tasks[method])  # unmerged: the task exactly as trained
    for batch_size in (1, 3):  # one file, two batch sizes: the batch axis is dynamic
        batch = torch.randn(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(batch_size))
        with torch.no_grad():
            want = model(batch).numpy()
        got = run_file(fmt, out, batch)
        assert got.shape == (batch_size, len(CLASSES))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    if method == "lora":
        assert result.meta["lora_merged_layers"] == 2 * 6  # qkv + fc1 in each of the 6 blocks
        if fmt == "torchscript":
            names = [n for n, _ in torch.jit.load(str(out)).named_parameters()]
            assert names and not [n for n in names if "lora" in n]  # merged: plain Linear layers only


def test_onnx_metadata_round_trip(one_thread, tasks, exported):
    result = exported("vpt-deep", "onnx")
    out = result.path
    props = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(props["classes"]) == CLASSES
    assert json.loads(props["preprocessing"]) == PRE
    assert json.loads(props["method"])["name"] == "vpt-deep"
    assert json.loads(props["input"])["shape"] == ["batch", 3, 32, 32]
    exporter = json.loads(props["exporter"])
    assert exporter.startswith("torch.onnx.export")
    side = json.loads(sidecar_path(out).read_text())
    assert side["classes"] == CLASSES and side["preprocessing"] == PRE and side["exporter"] == exporter
    assert side["check"]["max_abs_diff"] == result.check["max_abs_diff"]
    assert side["backbone"]["hash"] == json.loads((tasks["vpt-deep"] / "task.json").read_text())["backbone"]["hash"]
    assert side["backbone"]["hash"] != tiny_model(METHODS["vpt-deep"]).backbone_hash  # the pretrained micro ViT
    assert side["check"]["same_top1"]


def test_torchscript_metadata_round_trip(one_thread, tasks, tmp_path):
    out = tmp_path / "lin.pt"
    export_task(tasks["linear"], "torchscript", out, check=False)
    files = {"vptune.json": ""}
    torch.jit.load(str(out), _extra_files=files)
    meta = json.loads(files["vptune.json"])
    assert meta["classes"] == CLASSES and meta["preprocessing"] == PRE
    assert meta["exporter"].startswith("torch.jit.trace")
    assert json.loads(sidecar_path(out).read_text())["check"] is None


def test_torchscript_based_onnx_exporter_on_request(one_thread, tasks, tmp_path):
    result = export_task(tasks["vpt-prefix"], "onnx", tmp_path / "ts.onnx", exporter="torchscript")
    assert result.meta["exporter"] == "torch.onnx.export (TorchScript-based, dynamo=False)"
    assert result.check["max_abs_diff"] <= 1e-4


def test_auto_falls_back_when_dynamo_fails_and_records_why(one_thread, tasks, tmp_path, monkeypatch):
    from vptune.export import onnx_format

    def failing(model, example):
        raise RuntimeError("unsupported operator aten::foo\nmore detail")

    monkeypatch.setattr(onnx_format, "_export_dynamo", failing)
    result = export_task(tasks["linear"], "onnx", tmp_path / "a.onnx")
    assert result.meta["exporter"] == "torch.onnx.export (TorchScript-based, dynamo=False)"
    assert result.meta["dynamo_failure"] == "unsupported operator aten::foo"
    assert json.loads(sidecar_path(result.path).read_text())["dynamo_failure"] == "unsupported operator aten::foo"
    assert result.check["max_abs_diff"] <= 1e-4
    with pytest.raises(ExportError, match="the dynamo ONNX exporter failed: unsupported operator aten::foo"):
        export_task(tasks["linear"], "onnx", tmp_path / "b.onnx", exporter="dynamo")
    assert not (tmp_path / "b.onnx").exists()


def perturb_largest_initializer(path) -> None:
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(init).copy()
    arr += 0.05 * np.random.default_rng(0).standard_normal(arr.shape).astype(
        arr.dtype
    )  # not a constant: LN removes that
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save_model(proto, str(path))


def test_check_fails_on_tampered_weights(one_thread, tasks, exported, tmp_path):
    out = tmp_path / "m.onnx"
    shutil.copy(exported("vpt-shallow", "onnx").path, out)
    assert check_export(out, tasks["vpt-shallow"])["max_abs_diff"] <= 1e-4
    perturb_largest_initializer(out)
    with pytest.raises(ExportError, match="does not reproduce the task's logits"):
        check_export(out, tasks["vpt-shallow"])


def test_check_fails_on_file_of_another_task(one_thread, tasks, tmp_path, data_spec):
    other = save(tmp_path / "other", METHODS["linear"], data_spec, seed=7)  # same fields, other head weights
    out = tmp_path / "m.pt"
    export_task(other, "torchscript", out)
    with pytest.raises(ExportError, match="does not reproduce"):
        check_export(out, tasks["linear"])
    with pytest.raises(ExportError, match="field 'method' differs"):
        check_export(out, tasks["vpt-deep"])


def test_failed_check_writes_nothing(one_thread, tasks, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="does not reproduce"):
        export_task(tasks["linear"], "onnx", out, atol=-1.0, exporter="torchscript")  # no file passes atol < 0
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_never_overwritten_silently(one_thread, tasks, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="exists; choose another --out or pass --overwrite"):
        export_task(tasks["linear"], "torchscript", out)
    assert out.read_bytes() == b"keep me"
    sidecar_path(tmp_path / "n.pt").write_text("{}")
    with pytest.raises(ExportError, match=r"n\.pt\.json' exists"):
        export_task(tasks["linear"], "torchscript", tmp_path / "n.pt")
    export_task(tasks["linear"], "torchscript", out, overwrite=True, check=False)
    assert torch.jit.load(str(out)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.json", "n.pt.json"]  # no temporary left


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "tflite"}, "unknown export format 'tflite'; choose one of: onnx, torchscript"),
        ({"format": "onnx", "exporter": "tf2onnx"}, "unknown ONNX exporter 'tf2onnx'"),
        ({"format": "torchscript", "exporter": "dynamo"}, "exporter 'dynamo' applies to ONNX only"),
    ],
)
def test_bad_options_give_clear_errors(tasks, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_task(tasks["linear"], out=tmp_path / "m.onnx", check=False, **kwargs)


def test_missing_extra_names_it(tasks, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ExportError, match=r"pip install 'vptune\[export\]'"):
        export_task(tasks["linear"], "onnx", tmp_path / "m.onnx", check=False, exporter="torchscript")


def test_check_images_fall_back_to_bundled_digits(one_thread, tmp_path):
    task = save(tmp_path / "t", METHODS["linear"], "folder:/no/such/folder")
    result = export_task(task, "torchscript", tmp_path / "m.pt")
    assert result.check["source"].startswith("offline:digits (the task's data 'folder:/no/such/folder' cannot")
    given = make_image_folder(tmp_path / "imgs", classes=["a"], n_train=2, n_val=0, n_test=0) / "train" / "a"
    check = check_export(tmp_path / "m.pt", task, images=sorted(given.iterdir()))
    assert check["images"] == 2 and check["source"] == "2 given images"


def deploy_snippet() -> dict:
    """Execute the onnxruntime-only example of docs/deploy.md and return its namespace."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    section = text.split("## Running an exported ONNX file with onnxruntime only", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/deploy.md", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("augment", ["none", "flip-crop"])
def test_docs_onnxruntime_example_matches_predictor(one_thread, tmp_path, data_spec, augment):
    model = trained_like(METHODS["vpt-deep"])
    pre = {**PRE, "augment": augment, "interpolation": "bicubic"}
    save_task(tmp_path / "t", model, classes=CLASSES, preprocessing=pre, backbone_source=SRC)
    out = tmp_path / "m.onnx"
    export_task(tmp_path / "t", "onnx", out, exporter="torchscript")  # the fast exporter: the snippet is tested
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(50, 41), (37, 64), (32, 32)]):  # (H, W): tall, wide, exact
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(paths[-1])
    got = deploy_snippet()["predict"](str(out), [str(p) for p in paths], top_k=3)
    want = Predictor.from_dir(tmp_path / "t", device="cpu").predict(paths, top_k=3)
    for g, w in zip(got, want):
        assert [label for label, _ in g] == [d["label"] for d in w]
        np.testing.assert_allclose([s for _, s in g], [d["score"] for d in w], atol=1e-5)


def run_cli(argv: list[str]) -> int:
    """``vptune export ...`` through the real entry point."""
    from vptune.cli import main

    return main(["export", *argv])


def test_cli_export_and_its_errors(one_thread, tasks, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert run_cli([str(tasks["lora"]), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "check passed: max |logit diff|" in printed
    assert json.loads(sidecar_path(out).read_text())["lora_merged_layers"] == 12
    assert run_cli([str(tasks["lora"]), "--format", "torchscript", "--out", str(out)]) == 2
    assert "exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    args = [str(tasks["linear"]), "--format", "torchscript", "--out", str(out), "--overwrite", "--no-check", "--json"]
    assert run_cli(args) == 0
    assert json.loads(capsys.readouterr().out)["check"] == "skipped (--no-check)"
    with pytest.raises(SystemExit):
        run_cli([str(tasks["linear"]), "--format", "tflite", "--out", str(out)])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert run_cli([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "is not a task folder" in capsys.readouterr().err


def test_cli_choices_and_defaults_follow_the_library():
    from vptune.cli.export import DEFAULT_ATOL, EXPORTER_CHOICES, FORMAT_CHOICES
    from vptune.export import ATOL
    from vptune.export.onnx_format import EXPORTERS

    assert sorted(FORMAT_CHOICES) == format_names() and DEFAULT_ATOL == ATOL
    assert EXPORTER_CHOICES == EXPORTERS
