"""A saved segmentation task on images (``vptune predict``: colour + raw label PNGs) and on a split (``eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.images import load_image
from ..data.sources import TaskData
from ..engine.io import atomic_write
from ..errors import DataError, VptuneError
from .config import TaskKindMeta
from .data import SegDataset
from .evaluate import evaluate_segmentation, segment_image
from .palette import colourise, label_image
from .transforms import normalize_image, seg_eval_transform


def seg_settings(meta: dict[str, Any]) -> TaskKindMeta:
    """The validated ``task`` field of a segmentation task.json."""
    return TaskKindMeta.model_validate(meta.get("task") or {})


def crop_of(pre: dict[str, Any]) -> tuple[int, int]:
    return int(pre["input_size"][0]), int(pre["input_size"][1])


def predict_label_map(predictor: Any, image: Any, mode: str = "slide") -> np.ndarray:
    """One image (path, PIL or array) -> (H, W) int64 label map at the image's own size."""
    task, settings = predictor.task, seg_settings(predictor.task.meta)
    pil = load_image(image) if not hasattr(image, "convert") else image
    x = normalize_image(pil, task.preprocessing).to(predictor.device)
    multi = mode == "multiscale"
    scores = segment_image(
        predictor.model,
        x,
        crop_of(task.preprocessing),
        len(task.classes),
        base_size=settings.base_size,
        scales=tuple(settings.eval_scales) if multi else (1.0,),
        flip=multi,
        stride=settings.eval_stride,
    )
    return scores.argmax(0).cpu().numpy()


def write_masks(
    predictor: Any, paths: list[Path] | list[str], out_dir: str | Path, *, mode: str = "slide", overwrite: bool = False
) -> list[dict[str, Any]]:
    """Per image, ``STEM_mask.png`` (colour-coded) and ``STEM_labels.png`` (class index per pixel) in ``out_dir``.

    Raises:
        VptuneError: An output file exists and ``overwrite`` is off (nothing is replaced silently).
    """
    out, paths = Path(out_dir), [Path(p) for p in paths]
    targets = [(p, out / f"{p.stem}_mask.png", out / f"{p.stem}_labels.png") for p in paths]
    if not overwrite:
        taken = [str(f) for _, *files in targets for f in files if f.exists()]
        if taken:
            raise VptuneError(
                f"{taken[0]} exists ({len(taken)} output files do); pass --overwrite or another --out-dir"
            )
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise VptuneError("two images share a file stem; their mask files would collide: predict them separately")
    rows = []
    num_classes = len(predictor.task.classes)
    for path, colour_file, label_file in targets:
        labels = predict_label_map(predictor, path, mode)
        atomic_write(colour_file, lambda tmp, lb=labels: colourise(lb, num_classes).save(tmp, format="PNG"))
        atomic_write(label_file, lambda tmp, lb=labels: label_image(lb).save(tmp, format="PNG"))
        counts = np.bincount(labels.reshape(-1), minlength=num_classes)
        present = {predictor.task.classes[i]: float(c / labels.size) for i, c in enumerate(counts) if c}
        rows.append({"image": str(path), "mask": str(colour_file), "labels": str(label_file), "classes": present})
    return rows


def evaluate_seg_task(
    predictor: Any,
    data: TaskData,
    split: str,
    *,
    mode: str = "slide",
    skip_bad_images: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """mIoU / pixel accuracy / per-class IoU of a saved segmentation task on one split."""
    if data.task != "segmentation":
        raise DataError(f"data '{data.spec}' holds classification labels; a segmentation task needs masks")
    task, settings = predictor.task, seg_settings(predictor.task.meta)
    ds = SegDataset(
        data.split(split), seg_eval_transform(task.preprocessing), data.num_classes, skip_bad_images, data.reduce_labels
    )
    with torch.no_grad():
        return evaluate_segmentation(
            predictor.model,
            ds,
            predictor.device,
            crop_of(task.preprocessing),
            data.classes,
            base_size=settings.base_size,
            mode=mode,
            scales=settings.eval_scales,
            stride=settings.eval_stride,
            desc=split,
            progress=progress,
        )
