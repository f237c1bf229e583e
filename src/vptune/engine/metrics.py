"""Accuracy, evaluation loops and the JSON-lines metrics log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm


class JsonlLogger:
    """Appends one JSON object per line to ``metrics.jsonl``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None

    def log(self, **record: Any) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast: Any,
    desc: str = "eval",
    progress: bool = True,
) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy and mean loss over a loader."""
    model.eval()
    loss_sum, correct1, correct5, n, skipped = 0.0, 0, 0, 0, 0
    start = time.perf_counter()
    for batch in tqdm(loader, desc=desc, leave=False, disable=(not progress) or None):
        images, labels = batch
        skipped += batch.skipped
        if labels.numel() == 0:
            continue
        images, labels = images.to(device), labels.to(device)
        with autocast():
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == labels).sum().item()
        correct5 += (top == labels[:, None]).any(dim=1).sum().item()
        n += labels.numel()
    out = {"top1": correct1 / max(n, 1), "loss": loss_sum / max(n, 1), "n": n, "skipped": skipped}
    if model_classes(model) > 5:
        out["top5"] = correct5 / max(n, 1)
    out["seconds"] = time.perf_counter() - start
    return out


def model_classes(model: nn.Module) -> int:
    return int(getattr(model, "num_classes", 0))
