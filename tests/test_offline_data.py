"""Tests for vptune.data.offline: splits, determinism, checksums, fractals and the VTAB folder export."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from vptune.data.offline import (
    OfflineTask,
    export_vtab_layout,
    fractal_class_params,
    get_offline_task,
    list_offline_tasks,
    load_offline_task,
    render_fractals,
)

TASK_NAMES = [t.name for t in list_offline_tasks()]

# sha256 of the raw bytes of train800 images [0:8] at seed 0; catches any change in generation. After a
# deliberate change, print the new table with `.venv/bin/python tests/test_offline_data.py` and paste it here.
EXPECTED_SHA256 = {
    "digits": "ff60c44cb2a32284ee729df95832f6f489f1e712d05c152f87a4dee4e4251025",
    "textures": "acc2057204fa5537a6bcca3533bbffb083d091285176116a3949115d2bb8c9c4",
    "cells": "30e1f721724bf2c468761997c3e2a8118a766a9e9709ae6b9d7f21d954508df3",
    "landcover": "09c477b41c4b21996e8742f61a6a57cae0c08587c2188443511ac8114fbbb448",
    "dsprites_location": "29c58f7f1eab8b0cc54e0b80e587c523e30cd7b666759e7890d6f05afb50e216",
    "dsprites_orientation": "a7dba3d0eedf3e676e9eac6efdeff693143d8b63035837f9768fc26fdb0143b5",
    "clevr_count": "4df16cf6cf7d4e097adfccc42e712b81854c2dd9b411d357f27a236fe8856f03",
}


def _digest(name: str) -> str:
    first8 = np.ascontiguousarray(load_offline_task(name)["train800"][0][:8])
    return hashlib.sha256(first8.tobytes()).hexdigest()


def test_registry_covers_vtab_groups() -> None:
    tasks = list_offline_tasks()
    assert len(tasks) >= 7
    assert {t.group for t in tasks} == {"natural", "specialized", "structured"}
    assert len(set(TASK_NAMES)) == len(TASK_NAMES)
    assert set(EXPECTED_SHA256) == set(TASK_NAMES)
    for t in tasks:
        assert isinstance(t, OfflineTask)
        assert t.image_size == 32
        assert t.source and t.description
        assert len(t.classes) >= 2 and len(set(t.classes)) == len(t.classes)
        assert get_offline_task(t.name) is t


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_splits(name: str) -> None:
    task = get_offline_task(name)
    data = load_offline_task(name)
    assert set(data) == {"train800", "val200", "train800val200", "test"}
    expected = {"train800": 800, "val200": 200, "train800val200": 1000, "test": task.max_test}
    assert task.max_test >= 1000 or name == "digits"
    s = task.image_size
    for split, (x, y) in data.items():
        assert x.shape == (expected[split], s, s, 3) and x.dtype == np.uint8
        assert y.shape == (expected[split],) and y.dtype == np.int64
        assert y.min() >= 0 and y.max() < task.num_classes
        assert not x.flags.writeable and not y.flags.writeable
        assert x.std() > 1.0  # not blank
    x_tv, y_tv = data["train800val200"]
    np.testing.assert_array_equal(x_tv, np.concatenate([data["train800"][0], data["val200"][0]]))
    np.testing.assert_array_equal(y_tv, np.concatenate([data["train800"][1], data["val200"][1]]))
    assert np.bincount(y_tv, minlength=task.num_classes).min() >= 20  # every class present


def test_digits_uses_whole_source() -> None:
    task = get_offline_task("digits")
    assert task.max_test == 797
    counts = np.bincount(load_offline_task("digits")["test"][1], minlength=10)
    assert counts.min() > 50


@pytest.mark.parametrize("name", TASK_NAMES)
def test_checksum(name: str) -> None:
    assert _digest(name) == EXPECTED_SHA256[name]


def test_determinism_and_seeds() -> None:
    name = "dsprites_orientation"
    a = load_offline_task(name, seed=0)
    fresh = get_offline_task(name).generate(1800, np.random.default_rng(0))  # generator is pure given rng
    again = get_offline_task(name).generate(1800, np.random.default_rng(0))
    np.testing.assert_array_equal(fresh[0], again[0])
    np.testing.assert_array_equal(fresh[1], again[1])
    b = load_offline_task(name, seed=0)
    assert b is not a  # fresh dict ...
    assert b["test"][0] is a["test"][0]  # ... over the cached read-only arrays
    b.pop("test")
    assert "test" in load_offline_task(name, seed=0)
    c = load_offline_task(name, seed=1)
    assert not np.array_equal(a["train800"][0], c["train800"][0])
    with pytest.raises(ValueError):
        a["train800"][0][0, 0, 0, 0] = 1


def test_tasks_differ_from_each_other() -> None:
    loc = load_offline_task("dsprites_location")["train800"][0]
    ori = load_offline_task("dsprites_orientation")["train800"][0]
    assert not np.array_equal(loc, ori)  # seeded by task name


def test_unknown_task() -> None:
    with pytest.raises(ValueError, match="dsprites_location") as info:
        get_offline_task("nope")
    assert "nope" in str(info.value) and "clevr_count" in str(info.value)
    with pytest.raises(ValueError, match="known tasks"):
        load_offline_task("imagenet")
    with pytest.raises(ValueError):
        load_offline_task("digits", seed=-1)


def test_fractal_class_params() -> None:
    params = fractal_class_params(6, seed=0)
    assert len(params) == 6
    for p in params:
        assert p.ndim == 2 and p.shape[1] == 7 and 2 <= p.shape[0] <= 4
        assert np.all(np.abs(p[:, :6]) <= 1.0)
        np.testing.assert_allclose(p[:, 6].sum(), 1.0)
        det = np.abs(p[:, 0] * p[:, 3] - p[:, 1] * p[:, 2])
        np.testing.assert_allclose(p[:, 6], det / det.sum())
    prefix = fractal_class_params(3, seed=0)
    for p, q in zip(prefix, params[:3], strict=True):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(fractal_class_params(1, seed=1)[0], params[0])


def test_render_fractals() -> None:
    x, y = render_fractals(num_classes=4, per_class=24, image_size=32, seed=0)
    assert x.shape == (96, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (96,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [24] * 4)
    x2, y2 = render_fractals(num_classes=4, per_class=24, image_size=32, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    # shape masks: per image, pixels brighter than the image's midpoint between min and max
    v = x.max(axis=3).astype(np.float64)
    lo, hi = v.min(axis=(1, 2), keepdims=True), v.max(axis=(1, 2), keepdims=True)
    mask = (v - lo) / np.maximum(hi - lo, 1.0) > 0.5
    assert mask.mean(axis=(1, 2)).min() > 0.03  # every image shows a visible fractal
    for c in range(4):  # images of one class vary (colour, jitter, flips)
        imgs = x[y == c].reshape(24, -1)
        assert len({row.tobytes() for row in imgs}) == 24
    means = np.stack([mask[y == c].mean(axis=0) for c in range(4)])  # (4, 32, 32) mean masks
    halves = [np.abs(mask[y == c][:12].mean(0) - mask[y == c][12:].mean(0)).mean() for c in range(4)]
    between = [np.abs(means[i] - means[j]).mean() for i in range(4) for j in range(i + 1, 4)]
    assert min(between) > max(halves)  # classes differ more than two halves of one class


def test_export_vtab_layout(tmp_path) -> None:
    name = "cells"
    folder = export_vtab_layout(name, tmp_path, seed=0)
    assert folder == tmp_path / name
    data = load_offline_task(name)
    expected = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 1000}
    for split, count in expected.items():
        lines = (folder / f"{split}.txt").read_text().splitlines()
        assert len(lines) == count
        rel, label = lines[0].split(" ")
        assert int(label) == int(data[split][1][0])
        with Image.open(folder / rel) as img:
            np.testing.assert_array_equal(np.asarray(img.convert("RGB")), data[split][0][0])
    last_rel = (folder / "test.txt").read_text().splitlines()[-1].split(" ")[0]
    assert (folder / last_rel).is_file()
    assert len(list((folder / "images").iterdir())) == 2000
    assert (folder / "classes.txt").read_text().splitlines() == list(get_offline_task(name).classes)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp folder left behind
    with pytest.raises(FileExistsError, match="remove it or choose another root"):
        export_vtab_layout(name, tmp_path)


if __name__ == "__main__":  # prints the EXPECTED_SHA256 table
    for _name in TASK_NAMES:
        print(f'    "{_name}": "{_digest(_name)}",')
