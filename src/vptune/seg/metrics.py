"""mIoU, pixel accuracy and per-class IoU from a streaming confusion matrix (exact, any number of batches)."""

from __future__ import annotations

import math
from typing import Any

import torch


class ConfusionMatrix:
    """Accumulates ``matrix[true, predicted]`` pixel counts; pixels labelled ``ignore_index`` never count.

    Args:
        num_classes: K; labels outside ``[0, K)`` other than the ignore index raise ValueError.
        ignore_index: The label of pixels to leave out (vptune's label tensors use -100).
    """

    def __init__(self, num_classes: int, ignore_index: int = -100) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and true label maps of the same shape (any layout)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        k = self.num_classes
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
            raise ValueError(f"target labels must lie in [0, {k}) or be {self.ignore_index}")
        self.matrix += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix (e.g. from another process)."""
        self.matrix += other.matrix

    def iou(self) -> torch.Tensor:
        """Per-class IoU = TP / (TP + FP + FN), float64 (K,); NaN for a class absent from labels and predictions."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def summary(self, classes: list[str] | None = None) -> dict[str, Any]:
        """``miou`` (mean over classes present in labels or predictions), ``pixel_acc``, ``per_class_iou``."""
        iou = self.iou()
        present = ~torch.isnan(iou)
        total = int(self.matrix.sum())
        names = classes or [str(i) for i in range(self.num_classes)]
        return {
            "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
            "pixel_acc": float(self.matrix.diag().sum()) / max(total, 1),
            "pixels": total,
            "per_class_iou": {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, iou.tolist())},
        }
