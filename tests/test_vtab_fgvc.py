"""vtab1k: and fgvc: sources on tiny generated trees, their errors, and `vptune data check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vptune.cli import main
from vptune.data import load_data
from vptune.data.check import check_suite, format_report
from vptune.data.fgvc import FGVC_DATASETS
from vptune.data.vtab import VTAB_TASKS
from vptune.errors import DataError

SMALL = {"train800": 6, "val200": 3, "test": 4}


def _png(path: Path, label: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((8, 8, 3), 20 * (label % 12), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def make_vtab_tree(root: Path, name: str, num_classes: int, sizes=SMALL, classes_txt: bool = False) -> Path:
    """ROOT/NAME with images/ and the four list files (train800val200 = train800 + val200)."""
    folder = root / name
    lines: dict[str, list[str]] = {}
    for split, n in sizes.items():
        lines[split] = []
        for i in range(n):
            rel = f"images/{split}/{i}.png"
            _png(folder / rel, i % num_classes)
            lines[split].append(f"{rel} {i % num_classes}\n")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, ls in lines.items():
        (folder / f"{split}.txt").write_text("".join(ls))
    if classes_txt:
        (folder / "classes.txt").write_text("".join(f"c{i}\n" for i in range(num_classes)))
    return folder


def make_fgvc_tree(root: Path, folder_name: str, image_dir: str, ids=(3, 7, 11)) -> Path:
    """An FGVC folder with sparse class ids and images under ``image_dir``."""
    folder = root / folder_name
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        entries = {}
        for i in range(n):
            rel = f"{split}/{i}.jpg"
            _png(folder / image_dir / rel, i)
            entries[rel] = ids[i % len(ids)]
        (folder / f"{split}.json").write_text(json.dumps(entries))
    return folder


def test_catalogues_match_the_paper():
    counts = [t.num_classes for t in VTAB_TASKS]
    assert counts == [100, 102, 47, 102, 37, 10, 397, 2, 10, 45, 5, 8, 6, 6, 4, 16, 16, 18, 9]
    assert [t.group for t in VTAB_TASKS].count("structured") == 8
    assert [d.num_classes for d in FGVC_DATASETS] == [200, 555, 102, 120, 196]


def test_vtab1k_loads_splits_aliases_and_classes(tmp_path):
    make_vtab_tree(tmp_path, "eurosat", 10)
    data = load_data(f"vtab1k:{tmp_path}/eurosat")
    assert data.num_classes == 10 and data.classes[:2] == ["0", "1"]
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train800": 6, "val200": 3, "train800val200": 9, "test": 4, "train": 6, "val": 3,
    }  # fmt: skip
    path, label = data.split("test")[1]
    assert Path(path).is_file() and label == 1


def test_vtab1k_folder_alias_and_custom_task(tmp_path):
    make_vtab_tree(tmp_path, "oxford_flowers102", 102)
    assert load_data(f"vtab1k:{tmp_path}/flowers102").name == "flowers102"
    make_vtab_tree(tmp_path, "mytask", 3, classes_txt=True)
    data = load_data(f"vtab1k:{tmp_path}/mytask")
    assert data.classes == ["c0", "c1", "c2"]
    make_vtab_tree(tmp_path, "nolist", 3)
    with pytest.raises(DataError, match="not a VTAB-1k task.*classes.txt"):
        load_data(f"vtab1k:{tmp_path}/nolist")


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("missing_list", r"val200.txt' is missing"),
        ("malformed", r"train800.txt, line 2: expected 'relative/path.jpg LABEL'"),
        ("label", r"test.txt, line 1: label 10 is outside \[0, 10\)"),
        ("image", r"train800.txt, line 1: image .* does not exist"),
        ("folder", r"task folder .* does not exist"),
    ],
)
def test_vtab1k_errors_name_file_and_line(tmp_path, breakage, match):
    folder = make_vtab_tree(tmp_path, "eurosat", 10)
    if breakage == "missing_list":
        (folder / "val200.txt").unlink()
    elif breakage == "malformed":
        lines = (folder / "train800.txt").read_text().splitlines()
        lines[1] = "just-a-path.png"
        (folder / "train800.txt").write_text("\n".join(lines) + "\n")
    elif breakage == "label":
        (folder / "test.txt").write_text("images/test/0.png 10\n")
    elif breakage == "image":
        (folder / "images/train800/0.png").unlink()
    elif breakage == "folder":
        folder = tmp_path / "dtd"
    with pytest.raises(DataError, match=match):
        load_data(f"vtab1k:{tmp_path}/{folder.name}")


def test_fgvc_maps_sparse_ids_and_finds_image_roots(tmp_path):
    make_fgvc_tree(tmp_path, "CUB_200_2011", "images")
    data = load_data(f"fgvc:{tmp_path}/cub200")
    assert data.name == "cub200" and data.classes == ["3", "7", "11"]
    assert [lbl for _, lbl in data.split("train")] == [0, 1, 2, 0, 1, 2]
    assert len(data.split("trainval")) == 9
    make_fgvc_tree(tmp_path, "stanford_dogs", "Images")
    assert Path(load_data(f"fgvc:{tmp_path}/stanford_dogs").split("test")[0][0]).parent.parent.name == "Images"


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("missing_json", r"val.json' is missing"),
        ("bad_id", r"entry 'train/0.jpg': class id 'x' is not an integer"),
        ("unknown_id", r"test.json, entry 'test/0.jpg': class id 99 does not occur in train"),
        ("too_many", r"distinct class ids but this data set has 102 classes"),
        ("image", r"test.json, entry 'test/1.jpg': image .* does not exist"),
        ("name", r"not an FGVC data set"),
    ],
)
def test_fgvc_errors(tmp_path, breakage, match):
    folder = make_fgvc_tree(tmp_path, "flowers", ".")
    name = "flowers"
    if breakage == "missing_json":
        (folder / "val.json").unlink()
    elif breakage == "bad_id":
        (folder / "train.json").write_text(json.dumps({"train/0.jpg": "x"}))
    elif breakage == "unknown_id":
        (folder / "test.json").write_text(json.dumps({"test/0.jpg": 99}))
    elif breakage == "too_many":
        (folder / "train.json").write_text(json.dumps({f"train/{i}.jpg": i for i in range(103)}))
    elif breakage == "image":
        (folder / "test" / "1.jpg").unlink()
    elif breakage == "name":
        name = "birds"
    with pytest.raises(DataError, match=match):
        load_data(f"fgvc:{tmp_path}/{name}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The offline clevr_count task exported in the VTAB-1k layout (8 classes, like VTAB's clevr_count)."""
    from vptune.data.offline import export_vtab_layout

    root = tmp_path_factory.mktemp("vtab")
    export_vtab_layout("clevr_count", root)
    return root


def test_exported_offline_tree_loads_and_checks_clean(exported):
    data = load_data(f"vtab1k:{exported}/clevr_count")
    assert data.num_classes == 8 and len(data.split("train800val200")) == 1000
    report = check_suite("vtab1k", exported, tasks=["clevr_count"])
    assert report["ok"], format_report(report)
    task = report["tasks"][0]
    assert task["status"] == "ok"
    assert {s: v["n"] for s, v in task["splits"].items()} == {
        "train800": 800, "val200": 200, "train800val200": 1000, "test": 1000,
    }  # fmt: skip


def test_check_reports_every_problem(tmp_path):
    folder = make_vtab_tree(tmp_path, "eurosat", 10)
    (folder / "images/test/2.png").write_bytes(b"not a png")
    (folder / "images/train800/1.png").unlink()
    (folder / "val200.txt").write_text("images/val200/0.png 10\nbroken\n")
    report = check_suite("vtab1k", tmp_path, tasks=["eurosat", "dtd"])
    assert not report["ok"]
    eurosat, dtd = report["tasks"]
    assert dtd["status"] == "missing"
    text = "\n".join(p["message"] for p in eurosat["problems"])
    assert "test.txt, line 3: image" in text and "unreadable" in text
    assert "train800.txt, line 2: image" in text and "does not exist" in text
    assert "val200.txt, line 1: label 10 is outside [0, 10)" in text
    assert "val200.txt, line 2: expected" in text
    assert "train800.txt: 6 lines, expected 800" in text
    assert "FAILED" in format_report(report)


def test_check_fgvc_and_offline(tmp_path):
    make_fgvc_tree(tmp_path, "OxfordFlower", ".")
    report = check_suite("fgvc", tmp_path, tasks=["flowers", "cub200"])
    flowers, cub = report["tasks"]
    assert flowers["status"] == "warning" and "only 3 of 102 classes" in flowers["problems"][0]["message"]
    assert cub["status"] == "missing" and not report["ok"]
    report = check_suite("offline", None, tasks=["digits"])
    assert report["ok"] and report["tasks"][0]["splits"]["test"]["n"] == 797


def test_cli_data_check(exported, tmp_path, capsys):
    assert (
        main(["data", "check", "--suite", "vtab1k", "--root", str(exported), "--tasks", "clevr_count", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["ok"] is True
    make_vtab_tree(tmp_path, "eurosat", 10)
    assert main(["data", "check", "--suite", "vtab1k", "--root", str(tmp_path), "--tasks", "eurosat"]) == 1
    assert "expected 800" in capsys.readouterr().out


def test_tfds_exporter_explains_missing_dependency(tmp_path, monkeypatch):
    import sys

    from vptune.data.tfds_export import export_tfds_task

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails even where it is installed
    with pytest.raises(DataError, match="tensorflow-datasets"):
        export_tfds_task("dtd", tmp_path)
