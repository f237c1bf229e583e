"""The offline-seg report: mIoU table of finished runs + a picture of predicted masks beside the ground truth.

``python -m vptune.seg.report RUNS OUT`` reads ``RUNS/<method>/task.json`` (one finished ``vptune train`` per
method on ``offline:shapes_seg``), scores the all-background baseline on the same test split, and writes
``OUT/table.md``, ``OUT/results.json`` and ``OUT/masks.png`` (rows: test images; columns: image, ground truth,
then each method's prediction).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.offline.shapes_seg import CLASSES, load_shapes_seg
from ..engine.io import atomic_write, write_json
from ..predict import Predictor
from .metrics import ConfusionMatrix
from .palette import colourise
from .predict import predict_label_map

ORDER = ("linear", "vpt-deep", "bias", "full")


def baseline(masks: np.ndarray) -> dict[str, Any]:
    """Scores of predicting background everywhere on ``masks``."""
    cm = ConfusionMatrix(len(CLASSES))
    target = torch.from_numpy(masks.astype(np.int64))
    cm.update(torch.zeros_like(target), target)
    return cm.summary(list(CLASSES))


def mask_grid(runs: dict[str, Path], images: np.ndarray, masks: np.ndarray, scale: int = 3) -> Image.Image:
    """Rows: test images; columns: image, ground truth, then each method's prediction (nearest-upscaled)."""
    predictors = {m: Predictor.from_dir(p, device="cpu") for m, p in runs.items()}
    rows = []
    for image, mask in zip(images, masks):
        cells = [image, np.array(colourise(mask.astype(np.int64), len(CLASSES)))]
        for predictor in predictors.values():
            labels = predict_label_map(predictor, Image.fromarray(image))
            cells.append(np.array(colourise(labels, len(CLASSES))))
        gap = np.full((image.shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([c for cell in cells for c in (cell, gap)][:-1], axis=1))
    grid = np.concatenate([r for row in rows for r in (row, np.full((2, row.shape[1], 3), 255, np.uint8))][:-1])
    return Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)


def main(runs_root: str, out: str, n_images: int = 6) -> None:
    root, dest = Path(runs_root), Path(out)
    runs = {m: root / m for m in ORDER if (root / m / "task.json").is_file()}
    test_images, test_masks = load_shapes_seg(0)["test"]
    base = baseline(test_masks)
    results = {"baseline_all_background": {k: base[k] for k in ("miou", "pixel_acc")}}
    lines = [
        "| method | test mIoU | pixel acc | " + " | ".join(CLASSES) + " | trainable params | train s |",
        "|---|---|---|" + "---|" * len(CLASSES) + "---|---|",
        f"| all background | {100 * base['miou']:.2f} | {100 * base['pixel_acc']:.2f} | "
        + " | ".join(f"{100 * v:.1f}" if v is not None else "-" for v in base["per_class_iou"].values())
        + " | 0 | - |",
    ]
    for method, path in runs.items():
        meta = json.loads((path / "task.json").read_text())
        m = meta["metrics"]
        per = m["test_per_class_iou"]
        results[method] = {k: m[k] for k in ("test_miou", "test_pixel_acc", "test_per_class_iou", "train_seconds")}
        results[method]["trainable_params"] = meta["params"]["trainable_params"]
        lines.append(
            f"| {method} | {100 * m['test_miou']:.2f} | {100 * m['test_pixel_acc']:.2f} | "
            + " | ".join(f"{100 * per[c]:.1f}" if per.get(c) is not None else "-" for c in CLASSES)
            + f" | {meta['params']['trainable_params']:,} | {m['train_seconds']:.0f} |"
        )
    write_json(dest / "results.json", results)
    picture = mask_grid(runs, test_images[:n_images], test_masks[:n_images])
    atomic_write(dest / "masks.png", lambda tmp: picture.save(tmp, format="PNG"))
    table = "\n".join(lines) + "\n"
    atomic_write(dest / "table.md", lambda tmp: Path(tmp).write_text(table))
    print(table)


if __name__ == "__main__":
    main(*sys.argv[1:3])
