"""``folder:PATH``: ``train/``, optional ``val/``, optional ``test/``, each holding one folder per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .images import IMAGE_SUFFIXES
from .sources import Sample, TaskData, carve_val, register_source


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan(split_dir: Path, index: dict[str, int]) -> list[Sample]:
    samples: list[Sample] = []
    for class_dir in _class_dirs(split_dir):
        if class_dir.name not in index:
            known = ", ".join(sorted(index))
            raise DataError(f"'{class_dir}': class '{class_dir.name}' is not in train/ (classes: {known})")
        files = sorted(f for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        samples.extend((str(f), index[class_dir.name]) for f in files)
    if not samples:
        raise DataError(f"'{split_dir}' holds no images (expected {split_dir}/<class>/<image>.jpg)")
    return samples


@register_source("folder")
def load_folder(arg: str, options: dict[str, Any]) -> TaskData:
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder '{root}' does not exist")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"data folder '{root}' has no train/ subfolder (expected train/<class>/<image>)")
    classes = [d.name for d in _class_dirs(train_dir)]
    if not classes:
        raise DataError(f"'{train_dir}' has no class folders (expected {train_dir}/<class>/<image>.jpg)")
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = {"train": _scan(train_dir, index)}
    if (root / "val").is_dir():
        splits["val"] = _scan(root / "val", index)
    else:
        splits["train"], splits["val"] = carve_val(
            splits["train"], float(options.get("val_fraction", 0.1)), int(options.get("seed", 0))
        )
    if (root / "test").is_dir():
        splits["test"] = _scan(root / "test", index)
    return TaskData(name=root.name, classes=classes, splits=splits)
