"""Data sources behind one spec syntax: ``folder:PATH``, ``csv:FILE``, ``offline:NAME``, ...

A source turns a spec into a :class:`TaskData`: class names plus, per split, a list of (item, label) where the
item is an image path or an in-memory (H, W, 3) uint8 array. Nothing is decoded here: images stream later.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DataError

Sample = tuple[Any, int]


@dataclass
class TaskData:
    """Class names and labelled samples per split."""

    name: str
    classes: list[str]
    splits: dict[str, Sequence[Sample]] = field(default_factory=dict)
    spec: str = ""
    task: str = "classification"  # or "segmentation": samples are (image, mask) (vptune.seg)
    reduce_labels: bool = False  # segmentation masks: 0 -> ignore, k -> k - 1 (ADE20K)
    base_size: int | None = None  # segmentation: short side at evaluation scale 1.0 (None: the crop size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> Sequence[Sample]:
        """Samples of one split, or a DataError naming the splits that exist."""
        if name not in self.splits:
            raise DataError(f"data '{self.spec}' has no split '{name}'; it has: {', '.join(sorted(self.splits))}")
        return self.splits[name]


SourceFn = Callable[[str, dict[str, Any]], TaskData]
SOURCES: dict[str, SourceFn] = {}


def register_source(prefix: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: handle specs that start with ``prefix:``."""

    def wrap(fn: SourceFn) -> SourceFn:
        SOURCES[prefix] = fn
        return fn

    return wrap


def load_data(spec: str, **options: Any) -> TaskData:
    """Resolve a data spec such as ``folder:/data/pets`` into a :class:`TaskData`.

    Options (all optional): ``val_fraction`` (float), ``seed`` (int) for sources that carve a val split.
    """
    from ..seg import data as seg_data  # noqa: F401  (segfolder:, ade20k:)
    from . import csv_source, fgvc, folder, offline_source, vtab  # noqa: F401  (register sources)

    if ":" not in spec:
        raise ConfigError(f"data.spec: '{spec}' has no source prefix; use one of {', '.join(p + ':' for p in SOURCES)}")
    prefix, arg = spec.split(":", 1)
    if prefix not in SOURCES:
        raise ConfigError(f"data.spec: unknown source '{prefix}:'; use one of {', '.join(p + ':' for p in SOURCES)}")
    data = SOURCES[prefix](arg, options)
    data.spec = spec
    return data


def carve_val(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded split of ``samples`` into (train, val), at least one sample in each."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(len(samples) * fraction)), len(samples) - 1)
    val_idx = set(order[:n_val])
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def subsample(samples: Sequence[Sample], fraction: float, seed: int) -> list[Sample]:
    """A seeded subset of ``fraction`` of the samples (at least one), in original order."""
    if fraction >= 1.0:
        return list(samples)
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    keep = set(order[: max(1, round(len(samples) * fraction))])
    return [s for i, s in enumerate(samples) if i in keep]
