"""``csv:FILE``: rows of ``path,label`` (optional third column ``split``: train/val/test).

Paths are relative to the CSV file's folder and must stay inside it (no absolute paths, no ``..``); a header
row ``path,label[,split]`` is optional.
Without a split column every row is training data and a seeded share becomes val.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..errors import DataError
from .paths import outside_reason
from .sources import Sample, TaskData, carve_val, register_source

SPLITS = ("train", "val", "test")


@register_source("csv")
def load_csv(arg: str, options: dict[str, Any]) -> TaskData:
    path = Path(arg).expanduser()
    if not path.is_file():
        raise DataError(f"CSV file '{path}' does not exist")
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise DataError(f"CSV file '{path}' has no rows (expected 'path,label' per line)")
    parsed: list[tuple[str, str, str]] = []
    for line_no, row in enumerate(rows, start=1):
        if len(row) not in (2, 3):
            raise DataError(f"{path}, row {line_no}: expected 'path,label[,split]', got {row!r}")
        split = row[2].strip() if len(row) == 3 else "train"
        if split not in SPLITS:
            raise DataError(f"{path}, row {line_no}: split '{split}' is not one of {', '.join(SPLITS)}")
        reason = outside_reason(row[0].strip())
        if reason:
            raise DataError(f"{path}, row {line_no}: {reason} (put the CSV file above the images)")
        parsed.append((str(path.parent / row[0].strip()), row[1].strip(), split))
    labels = {label for _, label, _ in parsed}
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    classes = sorted(labels, key=int) if numeric else sorted(labels)
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = {}
    for file, label, split in parsed:
        splits.setdefault(split, []).append((file, index[label]))
    if "train" not in splits:
        raise DataError(f"CSV file '{path}' has no training rows")
    if "val" not in splits:
        splits["train"], splits["val"] = carve_val(
            splits["train"], float(options.get("val_fraction", 0.1)), int(options.get("seed", 0))
        )
    return TaskData(name=path.stem, classes=classes, splits=splits)
