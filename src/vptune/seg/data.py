"""Segmentation data: ``segfolder:ROOT`` and ``ade20k:ROOT`` sources, mask checks, and the joint dataset.

A segmentation sample is ``(image, mask)``: an image path or (H, W, 3) uint8 array, and a mask path or (H, W)
uint8 array of class indices (255 = ignore). Masks are checked when read: same size as the image, labels in
``[0, K)`` or 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..data.images import IMAGE_SUFFIXES, load_image
from ..data.sources import TaskData, carve_val, register_source
from ..errors import ConfigError, DataError
from .config import IGNORE_INDEX, SEGMENTATION
from .transforms import JointTransform

MAX_SEG_CLASSES = 255  # labels are stored as 8-bit PNGs; 255 is the ignore label


def load_mask(
    source: str | Path | np.ndarray, num_classes: int, size: tuple[int, int], reduce: bool = False
) -> np.ndarray:
    """Read a mask as (H, W) uint8 class indices and check it against its image.

    Args:
        source: A PNG path (mode L or P: one class index per pixel) or an (H, W) integer array.
        num_classes: K; labels must lie in [0, K) or be 255 (ignore).
        size: The image's (width, height), as PIL reports it.
        reduce: ADE20K: label 0 ("other") becomes 255 (ignore) and every other label drops by one.

    Raises:
        DataError: Missing or unreadable file, not one channel, size other than the image's, label out of range.
    """
    where = "mask array" if isinstance(source, np.ndarray) else f"mask '{source}'"
    if isinstance(source, np.ndarray):
        arr = source
    else:
        try:
            with Image.open(source) as img:
                if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                    raise DataError(
                        f"{where} is a {img.mode} image; masks must be single-channel PNGs (mode L or P) holding "
                        "one class index per pixel"
                    )
                arr = np.array(img)
        except FileNotFoundError:
            raise DataError(f"{where} does not exist; every image needs a mask with the same file stem") from None
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise DataError(f"cannot read {where} ({err}); fix or remove the file") from None
    if arr.ndim != 2:
        raise DataError(f"{where} has shape {arr.shape}; a mask is one (H, W) map of class indices")
    if (arr.shape[1], arr.shape[0]) != tuple(size):
        raise DataError(
            f"{where} is {arr.shape[1]}x{arr.shape[0]} but its image is {size[0]}x{size[1]} (width x height); "
            "a mask must have exactly its image's size"
        )
    arr = arr.astype(np.int64)
    if reduce:
        arr = np.where(arr == 0, IGNORE_INDEX + 1, arr) - 1  # 0 -> 255 (ignore), k -> k - 1
    bad = np.unique(arr[((arr < 0) | (arr >= num_classes)) & (arr != IGNORE_INDEX)])
    if bad.size:
        raise DataError(
            f"{where} holds labels {bad[:8].tolist()} outside the {num_classes} classes [0, {num_classes - 1}] "
            f"(255 = ignore); fix the mask or the class list"
        )
    return arr.astype(np.uint8)


class SegDataset(Dataset):
    """(image, mask) samples -> (normalised image, int64 label map), through a joint transform."""

    def __init__(
        self,
        samples: Sequence[tuple[Any, Any]],
        transform: JointTransform,
        num_classes: int,
        skip_bad: bool = False,
        reduce_labels: bool = False,
    ) -> None:
        self.samples, self.transform, self.num_classes = samples, transform, num_classes
        self.skip_bad, self.reduce_labels = skip_bad, reduce_labels

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, i: int) -> tuple[Image.Image, np.ndarray]:
        """The decoded, checked (PIL image, uint8 mask) of sample ``i``."""
        item, mask = self.samples[i]
        image = load_image(item)
        return image, load_mask(mask, self.num_classes, image.size, self.reduce_labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            return self.transform(*self.raw(i))
        except DataError:
            if self.skip_bad:
                return None
            raise


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def pair_masks(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs by file stem; a DataError names images without a mask."""
    if not images.is_dir():
        raise DataError(f"image folder '{images}' does not exist")
    if not masks.is_dir():
        raise DataError(f"mask folder '{masks}' does not exist; put one PNG per image there, same file stem")
    found, by_stem = _images(images), {p.stem: p for p in masks.glob("*.png")}
    missing = [s for s in found if s not in by_stem]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) in '{images}' have no mask in '{masks}' (e.g. '{missing[0]}' needs "
            f"'{masks / (missing[0] + '.png')}'); add the masks or remove the images"
        )
    if not found:
        raise DataError(f"image folder '{images}' holds no images")
    return [(found[s], by_stem[s]) for s in found]


def read_classes(path: Path) -> list[str]:
    """``classes.txt``: one class name per line, index = label (blank lines ignored)."""
    if not path.is_file():
        raise DataError(f"'{path}' is missing: list one class name per line (line 1 = label 0)")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not 2 <= len(classes) <= MAX_SEG_CLASSES:
        raise DataError(f"'{path}' lists {len(classes)} classes; a segmentation task needs 2 to {MAX_SEG_CLASSES}")
    if len(set(classes)) != len(classes):
        raise DataError(f"'{path}' repeats class names; each line must be unique")
    return classes


@register_source("segfolder")
def load_segfolder(arg: str, options: dict[str, Any]) -> TaskData:
    """``segfolder:ROOT``: ROOT/classes.txt, ROOT/images/[SPLIT/]*.jpg|png, ROOT/masks/[SPLIT/]STEM.png.

    With split subfolders (train, val, test) each is a split; a flat folder is all train, val carved out.
    """
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.spec: segfolder root '{root}' does not exist")
    classes = read_classes(root / "classes.txt")
    splits: dict[str, Sequence[tuple[Any, Any]]] = {}
    subsplits = [s for s in ("train", "val", "test") if (root / "images" / s).is_dir()]
    for split in subsplits:
        splits[split] = pair_masks(root / "images" / split, root / "masks" / split)
    if not subsplits:
        splits["train"] = pair_masks(root / "images", root / "masks")
    if "val" not in splits and len(splits["train"]) > 1:
        splits["train"], splits["val"] = carve_val(
            splits["train"], options.get("val_fraction", 0.1), options.get("seed", 0)
        )
    return TaskData(name=root.name, classes=classes, splits=splits, task=SEGMENTATION)


def ade20k_classes(root: Path) -> list[str]:
    """The 150 class names from ``objectInfo150.txt``/``.csv`` when present, else ``class_001``..``class_150``."""
    for name in ("objectInfo150.txt", "objectInfo150.csv"):
        path = root / name
        if path.is_file():
            rows = [r for r in path.read_text(errors="replace").splitlines()[1:] if r.strip()]
            names = [
                r.replace(",", "\t").split("\t")[-1].split(";")[0].strip() or f"class_{i + 1:03d}"
                for i, r in enumerate(rows)
            ]
            if len(names) == 150 and len(set(names)) == 150:
                return names
    return [f"class_{i:03d}" for i in range(1, 151)]


@register_source("ade20k")
def load_ade20k(arg: str, options: dict[str, Any]) -> TaskData:
    """``ade20k:ROOT`` (ADEChallengeData2016): images/{training,validation}, annotations/{training,validation}.

    150 classes; label 0 ("other") is ignored and the rest reduced by one (``reduce_labels``). ADE20K has no
    public test labels: the splits are ``train`` and ``val`` (the paper reports val).
    """
    root = Path(arg).expanduser()
    if not (root / "images").is_dir():
        raise ConfigError(
            f"data.spec: '{root}' is not an ADEChallengeData2016 folder (no images/ inside); point ade20k: at the "
            "folder holding images/ and annotations/"
        )
    splits = {
        out: pair_masks(root / "images" / name, root / "annotations" / name)
        for out, name in (("train", "training"), ("val", "validation"))
    }
    return TaskData(name="ade20k", classes=ade20k_classes(root), splits=splits, task=SEGMENTATION, reduce_labels=True)
