"""Running a saved task: top-k predictions for images, and accuracy on a data split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import ImageDataset, build_transform, load_data, make_loader
from .data.images import load_image
from .engine.device import autocast_factory, resolve_device
from .engine.metrics import evaluate
from .errors import DataError
from .model import AdaptedModel
from .tasks import TaskArtifact, load_task


class Predictor:
    """A loaded task plus its preprocessing."""

    def __init__(self, model: AdaptedModel, task: TaskArtifact, device: torch.device | None = None) -> None:
        self.device = device or next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.task = task
        self.transform = build_transform(task.preprocessing, train=False)

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "auto", **backbone: Any) -> Predictor:
        """Load a task folder; ``backbone`` may override ``model_name``, ``weights`` or ``pretrained``."""
        dev = resolve_device(device)
        model, task = load_task(path, device=dev, **backbone)
        return cls(model, task, dev)

    @torch.no_grad()
    def logits(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> torch.Tensor:
        """(N, num_classes) logits for image paths, PIL images or (H, W, 3) uint8 arrays."""
        pil = [im if isinstance(im, Image.Image) else load_image(im) for im in images]
        if not pil:
            raise DataError("no images given")
        batch = torch.stack([self.transform(im.convert("RGB")) for im in pil]).to(self.device)
        return self.model(batch).float()

    def segment(self, image: Any, mode: str = "slide") -> np.ndarray:
        """A segmentation task's (H, W) label map of one image at its own size (``mode``: slide or multiscale)."""
        from .seg.predict import predict_label_map

        if self.task.task_type != "segmentation":
            raise DataError(f"task '{self.task.path}' is a classification task; use predict()")
        return predict_label_map(self, image, mode)

    def predict(self, images: Sequence[Any], top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Per image, the ``top_k`` classes as ``{"label", "index", "score"}`` (softmax probability)."""
        if self.task.task_type == "segmentation":
            raise DataError(f"task '{self.task.path}' is a segmentation task; use segment() for label maps")
        probs = self.logits(images).softmax(dim=1)
        k = min(top_k, probs.shape[1])
        scores, idx = probs.topk(k, dim=1)
        classes = self.task.classes
        return [
            [{"label": classes[i], "index": int(i), "score": float(s)} for s, i in zip(row_s.tolist(), row_i.tolist())]
            for row_s, row_i in zip(scores, idx)
        ]


def evaluate_task(
    path: str | Path,
    spec: str,
    split: str = "test",
    *,
    batch_size: int = 64,
    device: str = "auto",
    skip_bad_images: bool = False,
    progress: bool = True,
    mode: str = "slide",
    **backbone: Any,
) -> dict[str, Any]:
    """Accuracy of a saved task on one split of a data source (class names must match the task's);
    a segmentation task: mIoU, pixel accuracy and per-class IoU (``mode``: slide or multiscale)."""
    predictor = Predictor.from_dir(path, device=device, **backbone)
    data = load_data(spec)
    if data.classes != predictor.task.classes:
        raise DataError(
            f"data '{spec}' has classes {data.classes[:6]}... but task '{path}' was trained on "
            f"{predictor.task.classes[:6]}...; evaluate on data with the same classes"
        )
    if predictor.task.task_type == "segmentation":
        from .seg.predict import evaluate_seg_task

        out = evaluate_seg_task(predictor, data, split, mode=mode, skip_bad_images=skip_bad_images, progress=progress)
        return {"task": str(path), "data": spec, "split": split, **out}
    ds = ImageDataset(data.split(split), predictor.transform, skip_bad_images)
    autocast, _ = autocast_factory(predictor.device, "auto")
    loader = make_loader(ds, batch_size, shuffle=False)
    out = evaluate(predictor.model, loader, predictor.device, autocast, desc=split, progress=progress)
    return {"task": str(path), "data": spec, "split": split, **out}
