"""Segmentation data: segfolder / ade20k sources, mask errors, joint transforms keep image and mask aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vptune.data import load_data
from vptune.data.offline.shapes_seg import CLASSES, load_shapes_seg
from vptune.errors import ConfigError, DataError
from vptune.seg.data import SegDataset, load_mask
from vptune.seg.transforms import joint_train_ops, seg_eval_transform, seg_train_transform, to_tv

PRE = {"input_size": [16, 16], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def write_segfolder(root: Path, n: int = 3, size=(12, 10), classes=("bg", "a", "b"), splits=True) -> Path:
    rng = np.random.default_rng(0)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for split in ("train", "val") if splits else ("",):
        for i in range(n):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                root / "images" / split / f"im{i}.jpg"
            )
            mask = rng.integers(0, len(classes), (size[1], size[0])).astype(np.uint8)
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"im{i}.png")
    return root


def test_segfolder_loads_as_a_segmentation_task(tmp_path):
    data = load_data(f"segfolder:{write_segfolder(tmp_path / 'sf')}")
    assert data.task == "segmentation" and data.classes == ["bg", "a", "b"]
    assert set(data.splits) == {"train", "val"} and len(data.split("train")) == 3
    image, labels = SegDataset(data.split("train"), seg_eval_transform(PRE), 3)[0]
    assert image.shape == (3, 10, 12) and labels.shape == (10, 12) and labels.dtype == torch.int64


def test_flat_segfolder_carves_a_val_split(tmp_path):
    data = load_data(f"segfolder:{write_segfolder(tmp_path / 'flat', n=10, splits=False)}", val_fraction=0.2)
    assert len(data.split("train")) == 8 and len(data.split("val")) == 2


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        ("missing", DataError, "have no mask"),
        ("size", DataError, "12x10 .*exactly its image's size|is 7x5 but its image is 12x10"),
        ("range", DataError, r"labels \[7\] outside the 3 classes"),
        ("rgb", DataError, "single-channel"),
        ("classes", DataError, "classes.txt' is missing"),
        ("root", ConfigError, "does not exist"),
    ],
)
def test_bad_masks_give_clear_errors(tmp_path, damage, error, match):
    root = write_segfolder(tmp_path / "sf")
    mask = root / "masks" / "train" / "im1.png"
    if damage == "missing":
        mask.unlink()
    elif damage == "size":
        Image.fromarray(np.zeros((5, 7), np.uint8), mode="L").save(mask)
    elif damage == "range":
        arr = np.zeros((10, 12), np.uint8)
        arr[3, 4], arr[0, 0] = 7, 255  # 255 = ignore is fine, 7 is not a class
        Image.fromarray(arr, mode="L").save(mask)
    elif damage == "rgb":
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(mask)
    elif damage == "classes":
        (root / "classes.txt").unlink()
    spec = f"segfolder:{root if damage != 'root' else tmp_path / 'nowhere'}"
    with pytest.raises(error, match=match):
        data = load_data(spec)
        ds = SegDataset(data.split("train"), seg_eval_transform(PRE), data.num_classes)
        for i in range(len(ds)):
            ds[i]


def test_ade20k_layout_reduces_labels(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / split / "ADE_1.jpg")
        Image.fromarray(np.array([[0, 1, 150, 2]] * 4, np.uint8), mode="L").save(
            root / "annotations" / split / "ADE_1.png"
        )
    data = load_data(f"ade20k:{root}")
    assert data.num_classes == 150 and data.reduce_labels and set(data.splits) == {"train", "val"}
    _, labels = SegDataset(data.split("val"), seg_eval_transform(PRE), 150, reduce_labels=True)[0]
    assert labels[0].tolist() == [-100, 0, 149, 1]  # 0 -> ignore, k -> k - 1
    with pytest.raises(ConfigError, match="not an ADEChallengeData2016 folder"):
        load_data(f"ade20k:{tmp_path}")


def test_load_mask_accepts_arrays_and_ignore():
    arr = np.array([[0, 255], [2, 1]], np.uint8)
    assert load_mask(arr, 3, (2, 2)).tolist() == arr.tolist()
    with pytest.raises(DataError, match="is 2x2 but its image is 3x2"):
        load_mask(arr, 3, (3, 2))


def pattern(size: int = 64, block: int = 16, k: int = 6) -> tuple[Image.Image, np.ndarray]:
    """A known pattern: block (i, j) has label (i + 2 j) % k and red value 40 x label (green: its column)."""
    yy, xx = np.mgrid[0:size, 0:size] // block
    labels = ((yy + 2 * xx) % k).astype(np.uint8)
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = labels * 40
    img[..., 1] = xx * 20
    return Image.fromarray(img), labels


@pytest.mark.parametrize(
    ("scale", "flip_p"), [((2.0, 2.0), 1.0), ((2.0, 2.0), 0.0), ((1.0, 1.0), 1.0), ((0.5, 3.0), 0.5)]
)
def test_joint_transform_keeps_image_and_mask_aligned(scale, flip_p):
    image, labels = pattern()
    ops = joint_train_ops((32, 32), tuple(s * 64 / 32 / 2 for s in scale), photometric=False, flip_p=flip_p)
    for seed in range(6):
        torch.manual_seed(seed)
        img, msk = ops(*to_tv(image, labels))
        img, msk = img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor)
        assert img.shape == (3, 32, 32) and msk.shape == (32, 32)
        valid = msk != 255  # padding (scale < crop) carries the ignore label and black pixels
        assert bool((img[:, ~valid] == 0).all())
        m = msk.long()
        interior = torch.zeros_like(valid)  # pixels whose 5x5 neighbourhood has one label: no resize blend
        r = range(-2, 3)
        interior[2:-2, 2:-2] = torch.stack(
            [m[2 + dy : 30 + dy, 2 + dx : 30 + dx] == m[2:-2, 2:-2] for dy in r for dx in r]
        ).all(0)
        pure = valid & interior
        agree = ((img[0][pure].long() - 40 * m[pure]).abs() <= 2).float().mean()  # rounding of the resize
        assert float(agree) > (0.999 if scale[0] >= 1.0 else 0.98), float(agree)


def test_flip_moves_image_and_mask_together():
    image, labels = pattern()
    ops = joint_train_ops((64, 64), (1.0, 1.0), photometric=False, flip_p=1.0)  # resize to 64: identity, crop all
    img, msk = ops(*to_tv(image, labels))
    assert torch.equal(msk.as_subclass(torch.Tensor), torch.from_numpy(labels).flip(-1))
    assert torch.equal(img[0].as_subclass(torch.Tensor), torch.from_numpy(labels * 40).flip(-1).to(torch.uint8))


def test_train_transform_outputs_crop_and_ignore_as_minus_100():
    image, labels = pattern(size=20)
    torch.manual_seed(0)
    img, lab = seg_train_transform(PRE, (0.5, 0.5), photometric=True)(image, labels)  # 8px: padded to 16
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32 and lab.shape == (16, 16)
    assert bool((lab == -100).any()) and int(lab.max()) < 6


def test_offline_shapes_seg_is_deterministic_with_all_classes():
    a, b = load_shapes_seg.__wrapped__(0), load_shapes_seg.__wrapped__(0)
    assert {k: v[0].shape[0] for k, v in a.items()} == {"train": 800, "val": 200, "test": 300}
    for split in a:
        assert np.array_equal(a[split][0], b[split][0]) and np.array_equal(a[split][1], b[split][1])
    assert set(np.unique(a["train"][1]).tolist()) == set(range(len(CLASSES)))
    assert len(CLASSES) >= 6
    background = float((a["test"][1] == 0).mean())
    assert 0.3 < background < 0.9
    data = load_data("offline:shapes_seg")
    assert data.task == "segmentation" and data.base_size == 48 and data.classes == list(CLASSES)
