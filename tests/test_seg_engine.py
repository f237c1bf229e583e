"""Segmentation end to end: train (CLI), artifact, ``vptune eval`` mIoU, ``vptune predict`` PNGs, serve PNG masks."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from vptune.cli import main
from vptune.data.offline.shapes_seg import CLASSES, load_shapes_seg

pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN = [
    "train",
    "--model",
    "vptune_micro_vit",
    "--no-pretrained",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--no-progress",
]
SMALL = ["--set", "seg.channels=8", "--set", "seg.aux_layers=[2]", "--set", "seg.eval_scales=[0.75,1.0]"]


def run(args, capsys) -> str:
    code = main([str(a) for a in args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def write_split(root: Path, split: str, images: np.ndarray, masks: np.ndarray) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "masks" / split).mkdir(parents=True)
    for i, (im, m) in enumerate(zip(images, masks)):
        Image.fromarray(im).save(root / "images" / split / f"s{i}.png")
        Image.fromarray(m, mode="L").save(root / "masks" / split / f"s{i}.png")


@pytest.fixture(scope="module")
def segfolder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segdata") / "shapes"
    arrays = load_shapes_seg(0)
    for split, n in (("train", 8), ("val", 3), ("test", 3)):
        write_split(root, split, arrays[split][0][:n], arrays[split][1][:n])
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


@pytest.fixture(scope="module")
def seg_task(segfolder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "seg"
    code = main([*TRAIN, "--data", f"segfolder:{segfolder}", "--method", "vpt-deep", "--out", str(out), *SMALL])
    assert code == 0
    return out


def test_training_writes_a_segmentation_artifact(seg_task):
    meta = json.loads((seg_task / "task.json").read_text())
    assert meta["task"]["type"] == "segmentation" and meta["task"]["decoder"]["aux_layers"] == [2]
    assert meta["classes"] == list(CLASSES)
    m = meta["metrics"]
    assert 0.0 <= m["test_miou"] <= 1.0 and 0.0 <= m["val_miou"] <= 1.0 and m["test_n"] == 3
    assert set(m["test_per_class_iou"]) == set(CLASSES)
    records = [json.loads(line) for line in (seg_task / "metrics.jsonl").read_text().splitlines()]
    assert "miou" in records[0]["val"] and records[-1]["split"] == "test"


@pytest.mark.parametrize("mode", ["slide", "multiscale"])
def test_eval_prints_miou(seg_task, mode, capsys):
    out = run(["eval", seg_task, "--mode", mode], capsys)
    assert out.startswith("test mIoU ") and f"({mode})" in out
    res = json.loads(run(["eval", seg_task, "--mode", mode, "--json"], capsys))
    assert res["mode"] == mode and res["n"] == 3 and 0.0 <= res["miou"] <= 1.0
    if mode == "slide":
        saved = json.loads((seg_task / "task.json").read_text())["metrics"]["test_miou"]
        assert res["miou"] == pytest.approx(saved, abs=1e-6)  # eval of the artifact = the run's own test score


def test_predict_writes_colour_and_label_pngs(seg_task, segfolder, tmp_path, capsys):
    images = sorted((segfolder / "images" / "test").glob("*.png"))
    out = run(["predict", seg_task, *images, "--out-dir", tmp_path / "m"], capsys)
    assert "wrote 3 masks" in out
    labels = np.array(Image.open(tmp_path / "m" / "s0_labels.png"))
    colour = Image.open(tmp_path / "m" / "s0_mask.png")
    assert labels.shape == (48, 48) and labels.max() < len(CLASSES) and colour.mode == "RGB" and colour.size == (48, 48)
    code = main(["predict", str(seg_task), str(images[0]), "--out-dir", str(tmp_path / "m")])
    assert code == 2 and "exists" in capsys.readouterr().err  # nothing replaced without --overwrite


def test_task_flag_must_match_the_data(segfolder, tmp_path, capsys):
    folder = make_image_folder(tmp_path / "cls")
    code = main([*TRAIN, "--data", f"folder:{folder}", "--task", "segmentation", "--out", str(tmp_path / "x")])
    assert code == 2 and "needs data with masks" in capsys.readouterr().err
    code = main([*TRAIN, "--data", f"segfolder:{segfolder}", "--task", "classification", "--out", str(tmp_path / "y")])
    assert code == 2 and "holds segmentation data" in capsys.readouterr().err
    code = main([*TRAIN, "--data", f"segfolder:{segfolder}", "--method", "mlp", "--out", str(tmp_path / "z")])
    assert code == 2 and "can not train a segmentation task" in capsys.readouterr().err


def test_serve_returns_png_masks_next_to_a_classification_task(seg_task, segfolder, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vptune.serve.app import create_app
    from vptune.tasks.multitask import MultiTaskModel

    cls_dir = tmp_path / "cls"
    folder = make_image_folder(tmp_path / "clsdata", size=32)
    assert main([*TRAIN, "--data", f"folder:{folder}", "--method", "vpt-shallow", "--out", str(cls_dir)]) == 0
    bank = MultiTaskModel.from_dirs({"shapes": seg_task, "pets": cls_dir})
    png = (segfolder / "images" / "test" / "s0.png").read_bytes()
    with TestClient(create_app(bank, max_batch=4, max_wait_ms=10, trusted_hosts=("testserver",))) as client:
        r = client.post("/v1/segment", files={"file": ("a.png", png)}, data={"task": "shapes"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        mask = np.array(Image.open(io.BytesIO(r.content)))
        assert mask.shape == (32, 32) and mask.max() < len(CLASSES)
        colour = client.post("/v1/segment", files={"file": ("a.png", png)}, data={"task": "shapes", "colour": "true"})
        assert Image.open(io.BytesIO(colour.content)).mode == "RGB"
        files = [("file", ("a.png", png)), ("file", ("b.png", png))]
        both = client.post("/v1/predict/batch", files=files, data={"tasks": "shapes,pets"}).json()
        decoded = np.array(Image.open(io.BytesIO(base64.b64decode(both[0]["mask_png"]))))
        assert np.array_equal(decoded, mask) and both[0]["size"] == [32, 32]
        assert both[1]["predictions"][0]["label"] in {"cat", "dog", "fox"}
        wrong = client.post("/v1/segment", files={"file": ("a.png", png)}, data={"task": "pets"})
        assert wrong.status_code == 422 and "not a segmentation task" in wrong.json()["detail"]


def test_report_writes_table_and_mask_picture(seg_task, tmp_path):
    import shutil

    from vptune.seg.report import baseline
    from vptune.seg.report import main as report

    shutil.copytree(seg_task, tmp_path / "runs" / "vpt-deep")
    report(str(tmp_path / "runs"), str(tmp_path / "out"), n_images=2)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| all background |" in table and "| vpt-deep |" in table
    picture = Image.open(tmp_path / "out" / "masks.png")
    assert picture.size == (3 * (3 * 48 + 2 * 2), 3 * (2 * 48 + 2))  # image, truth, one method; 2 rows; x3
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, :2] = 3  # 8 of 32 pixels are class 3: background IoU 24/32, class 3 IoU 0
    assert baseline(masks)["miou"] == pytest.approx((24 / 32) / 2)


def test_export_refuses_segmentation_tasks(seg_task, tmp_path):
    from vptune.export import export_task
    from vptune.export.base import ExportError

    with pytest.raises(ExportError, match="segmentation task"):
        export_task(seg_task, out=tmp_path / "m.onnx")


def test_predictor_segments_images_at_their_own_size(seg_task, segfolder):
    from vptune.errors import DataError
    from vptune.predict import Predictor

    predictor = Predictor.from_dir(seg_task, device="cpu")
    image = Image.open(segfolder / "images" / "test" / "s1.png").resize((60, 40))
    for mode in ("slide", "multiscale"):
        labels = predictor.segment(image, mode)
        assert labels.shape == (40, 60) and labels.max() < len(CLASSES)
    with pytest.raises(DataError, match="segment"):
        predictor.predict([image])
