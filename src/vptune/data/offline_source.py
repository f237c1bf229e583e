"""``offline:NAME``: the bundled, generated offline task suite (see docs/offline-tasks.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from .sources import Sample, TaskData, register_source


class ArraySamples(Sequence):
    """(image array, label) pairs over two aligned arrays, without copying them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        return self.images[i], int(self.labels[i])


def vtab_aliases(splits: dict[str, Sequence[Sample]]) -> dict[str, Sequence[Sample]]:
    """VTAB-1k split names plus the generic ``train``/``val`` aliases (train800 / val200)."""
    out = dict(splits)
    out.setdefault("train", splits["train800"])
    out.setdefault("val", splits["val200"])
    return out


@register_source("offline")
def load_offline(arg: str, options: dict[str, Any]) -> TaskData:
    from .offline import get_offline_task, load_offline_task
    from .offline.shapes_seg import SEG_TASKS, seg_task_data

    if arg in SEG_TASKS:  # segmentation tasks (docs/segmentation.md)
        return seg_task_data(arg)
    try:
        task = get_offline_task(arg)
    except ValueError as err:
        raise ConfigError(f"data.spec: {err}; segmentation: {', '.join(SEG_TASKS)}") from None
    arrays = load_offline_task(arg)
    splits = {name: ArraySamples(images, labels) for name, (images, labels) in arrays.items()}
    return TaskData(name=arg, classes=list(task.classes), splits=vtab_aliases(splits))
