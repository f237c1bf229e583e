"""Accuracy, evaluation loops and the JSON-lines metrics log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .io import atomic_write


class JsonlLogger:
    """Appends one JSON object per line to ``metrics.jsonl``, safely across crashes and resumes.

    Each line is written with a single ``write`` on an append-only descriptor and fsynced. On opening, a torn
    last line (a crash mid-write) is dropped. A record with a ``split`` or ``epoch`` that repeats an earlier
    record's ``(split, epoch)`` (an epoch re-run after resuming from the previous checkpoint) replaces it, so no
    epoch is logged twice.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._keys: set[tuple[Any, Any]] = set()
        if self.path is not None and self.path.is_file():
            records = self.read(self.path)
            if self.path.read_bytes() != self._encode(records):
                self._rewrite(records)
            self._keys = {self._key(r) for r in records}

    @staticmethod
    def read(path: str | Path) -> list[dict[str, Any]]:
        """The complete records of a log (a torn or unparsable line is left out)."""
        out = []
        for line in Path(path).read_bytes().split(b"\n"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    @staticmethod
    def _key(record: dict[str, Any]) -> tuple[Any, Any]:
        return (record.get("split"), record.get("epoch"))

    @staticmethod
    def _encode(records: list[dict[str, Any]]) -> bytes:
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        data = self._encode(records)
        assert self.path is not None
        atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(data))

    def log(self, **record: Any) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self._key(record)
        if key != (None, None) and key in self._keys:  # re-run after a resume: replace, do not duplicate
            kept = [r for r in self.read(self.path) if self._key(r) != key]
            self._rewrite([*kept, record])
            return
        self._keys.add(key)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, json.dumps(record).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


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
