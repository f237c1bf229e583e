"""The export check: the exported file must reproduce the task's PyTorch logits on real images.

Images pass through the task's own preprocessing (``build_transform(task.preprocessing, train=False)``). They
come from, in order: the images the caller names; the test split of the data the task was trained on (read
from ``task.json``'s ``train_config``), when it can still be loaded; the bundled handwritten digits
(``offline:digits``), which are always available offline. The check result names which one was used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import build_transform, load_data
from ..data.images import load_image
from ..errors import VptuneError
from ..tasks import TaskArtifact
from .base import ExportError

ATOL = 1e-4  # max |logit difference| allowed between the exported file and PyTorch
CHECK_IMAGES = 8
FALLBACK_SPEC = "offline:digits"
SPLIT_ORDER = ("test", "val", "train")


def _spread(samples: Sequence[Any], count: int) -> list[Any]:
    """``count`` samples evenly spaced over the split (so several classes appear), deterministic."""
    idx = np.linspace(0, len(samples) - 1, num=min(count, len(samples))).round().astype(int)
    return [samples[int(i)][0] for i in idx]


def _from_spec(spec: str, count: int) -> list[Any]:
    data = load_data(spec)
    for split in SPLIT_ORDER:
        if split in data.splits and len(data.splits[split]):
            return _spread(data.splits[split], count)
    raise ExportError(f"data '{spec}' has no test, val or train images")


def check_images(
    task: TaskArtifact, images: Sequence[str | Path] | None = None, count: int = CHECK_IMAGES
) -> tuple[torch.Tensor, str]:
    """A preprocessed batch (N, 3, H, W) for the check and a description of where its images came from."""
    transform = build_transform(task.preprocessing, train=False)
    if images:
        items: list[Any] = list(images)
        source = f"{len(items)} given images"
    else:
        spec = (task.meta.get("train_config") or {}).get("data", {}).get("spec") or ""
        items, source = [], ""
        if spec:
            try:
                items, source = _from_spec(spec, count), f"the task's data '{spec}'"
            except VptuneError as err:  # data moved or not readable here: fall back, and say so
                source = f"{FALLBACK_SPEC} (the task's data '{spec}' cannot be read here: {err})"
        if not items:
            items = _from_spec(FALLBACK_SPEC, count)
            source = source or f"{FALLBACK_SPEC} (the task records no data source)"
    batch = torch.stack([transform(load_image(item).convert("RGB")) for item in items])  # (N, 3, H, W)
    return batch, source


def compare_logits(
    run: Callable[[np.ndarray], np.ndarray], batch: torch.Tensor, reference: torch.Tensor, path: Path, atol: float
) -> dict[str, Any]:
    """Run the exported file on ``batch`` and compare with ``reference`` logits; an error past ``atol``."""
    got = run(batch.numpy().astype(np.float32))
    want = reference.numpy()
    if got.shape != want.shape:
        raise ExportError(f"'{path}' returns logits of shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    if not np.isfinite(diff) or diff > atol:
        raise ExportError(
            f"'{path}' does not reproduce the task's logits: max |difference| {diff:.3g} > {atol:g} on "
            f"{len(batch)} images. The file is damaged or was exported from another task; export it again"
        )
    same_top1 = bool((got.argmax(1) == want.argmax(1)).all())
    return {"images": len(batch), "max_abs_diff": diff, "atol": atol, "same_top1": same_top1}
