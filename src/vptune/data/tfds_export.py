"""Optional: export VTAB-1k tasks from TensorFlow Datasets into the ``vtab1k:ROOT/TASK`` layout.

Needs ``pip install tensorflow-datasets`` (and TensorFlow); vptune never imports either unless this exporter
is called. Examples stream one at a time (``tfds.as_numpy``) and are written as PNG files plus the four list
files, so memory stays flat even for dSprites. The split slices follow the VTAB-1k definitions of Google's
``task_adaptation`` code: ``train800`` = the first 800 examples of the task's training pool, ``val200`` = the
first 200 of its validation pool, ``test`` = its test pool. Check an export with ``vptune data check``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

LabelFn = Callable[[dict[str, Any]], int]


def _key(name: str) -> LabelFn:
    return lambda ex: int(ex[name])


def _clevr_count(ex: dict[str, Any]) -> int:
    return len(ex["objects"]["size"]) - 3


def _clevr_dist(ex: dict[str, Any]) -> int:
    dist = float(np.min(ex["objects"]["pixel_coords"][:, 2]))
    return int(np.searchsorted([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0], dist) - 1)


def _kitti_dist(ex: dict[str, Any]) -> int:
    vehicles = np.isin(ex["objects"]["type"], [0, 1, 2])  # Car, Van, Truck
    dist = float(np.min(ex["objects"]["location"][vehicles, 2])) if vehicles.any() else 1000.0
    return int(np.searchsorted([-100.0, 8.0, 20.0, 999.0], dist) - 1)


# task -> (tfds name, training pool slice, validation pool slice, test slice, label function)
TFDS_TASKS: dict[str, tuple[str, str, str, str, LabelFn]] = {
    "cifar100": ("cifar100:3.*.*", "train", "train[45000:]", "test", _key("label")),
    "caltech101": ("caltech101:3.*.*", "train", "train[2754:]", "test", _key("label")),
    "dtd": ("dtd:3.*.*", "train", "validation", "test", _key("label")),
    "flowers102": ("oxford_flowers102:2.*.*", "train", "validation", "test", _key("label")),
    "pets": ("oxford_iiit_pet:3.*.*", "train", "train[2944:]", "test", _key("label")),
    "svhn": ("svhn_cropped:3.*.*", "train", "train[65931:]", "test", _key("label")),
    "sun397": ("sun397/tfds:4.*.*", "train", "validation", "test", _key("label")),
    "camelyon": ("patch_camelyon:2.*.*", "train", "validation", "test", _key("label")),
    "eurosat": ("eurosat/rgb:2.*.*", "train", "train[16200:]", "train[21600:]", _key("label")),
    "resisc45": ("resisc45:3.*.*", "train", "train[18900:]", "train[25200:]", _key("label")),
    "retinopathy": ("diabetic_retinopathy_detection/btgraham-300:3.*.*", "train", "validation", "test", _key("label")),
    "clevr_count": ("clevr:3.*.*", "train", "train[63000:]", "validation", _clevr_count),
    "clevr_dist": ("clevr:3.*.*", "train", "train[63000:]", "validation", _clevr_dist),
    "dmlab": ("dmlab:2.0.1", "train", "validation", "test", _key("label")),
    "kitti_dist": ("kitti:3.2.0", "train", "validation", "test", _kitti_dist),
    "dsprites_loc": ("dsprites:2.*.*", "train", "train[589824:]", "train[663552:]",
                     lambda ex: int(ex["label_x_position"]) // 2),
    "dsprites_ori": ("dsprites:2.*.*", "train", "train[589824:]", "train[663552:]",
                     lambda ex: int(ex["label_orientation"]) * 16 // 40),
    "smallnorb_azi": ("smallnorb:2.*.*", "train", "test[:12150]", "test[12150:]", _key("label_azimuth")),
    "smallnorb_ele": ("smallnorb:2.*.*", "train", "test[:12150]", "test[12150:]", _key("label_elevation")),
}  # fmt: skip


# Tasks whose TFDS images hold 0/1 values: VTAB multiplies them by 255 (task_adaptation's dsprites.py).
BINARY_IMAGE_TASKS = frozenset({"dsprites_loc", "dsprites_ori"})


def example_image(task: str, ex: dict[str, Any]) -> Any:
    """The PIL image VTAB feeds the model for one TFDS example (dSprites' 0/1 pixels scaled to 0/255)."""
    from PIL import Image

    img = np.asarray(ex["image"])
    if task in BINARY_IMAGE_TASKS:
        if img.size and int(img.max()) > 1:
            raise DataError(f"{task}: expected dSprites' 0/1 pixels, found values up to {int(img.max())}")
        img = img.astype(np.uint8) * 255  # (64, 64, 1): 0/1 -> 0/255, as VTAB's preprocessing
    img = img.astype(np.uint8)
    return Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img)


def _first(split: str, n: int) -> str:
    """``train`` -> ``train[:n]``; ``train[45000:]`` -> ``train[45000:45000+n]``."""
    if "[" not in split:
        return f"{split}[:{n}]"
    name, rest = split.split("[", 1)
    start = int(rest.split(":")[0] or 0)
    return f"{name}[{start}:{start + n}]"


def export_tfds_task(task: str, root: str | Path, data_dir: str | None = None) -> Path:
    """Write ``ROOT/TASK`` (PNG images + train800/val200/train800val200/test lists) from TFDS.

    Raises:
        DataError: tensorflow-datasets is not installed, the task is unknown or the folder exists.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            "exporting VTAB-1k from TensorFlow Datasets needs tensorflow-datasets: pip install tensorflow-datasets "
            "tensorflow (or build the vtab1k:ROOT/TASK folders another way; see docs/benchmarks.md)"
        ) from None
    if task not in TFDS_TASKS:
        raise DataError(f"no TFDS recipe for '{task}'; tasks: {', '.join(TFDS_TASKS)}")
    name, train_pool, val_pool, test_split, label_fn = TFDS_TASKS[task]
    folder = Path(root) / task
    if folder.exists():
        raise DataError(f"{folder} exists already; remove it or choose another root")
    (folder / "images").mkdir(parents=True)
    lines: dict[str, list[str]] = {}
    for split, tfds_split in (("train800", _first(train_pool, 800)), ("val200", _first(val_pool, 200)),
                              ("test", test_split)):  # fmt: skip
        lines[split] = []
        ds = tfds.load(name, split=tfds_split, data_dir=data_dir, shuffle_files=False)
        for i, ex in enumerate(tfds.as_numpy(ds)):
            rel = f"images/{split}_{i:06d}.png"
            example_image(task, ex).save(folder / rel)
            lines[split].append(f"{rel} {label_fn(ex)}\n")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (folder / f"{split}.txt").write_text("".join(rows))
    return folder
