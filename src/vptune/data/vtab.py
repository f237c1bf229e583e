"""``vtab1k:ROOT/TASK``: VTAB-1k without TensorFlow, from image folders plus split list files.

Layout per task (used by several follow-up works of VPT)::

    ROOT/TASK/train800.txt  val200.txt  train800val200.txt  test.txt    ("relative/path.jpg LABEL" per line)
    ROOT/TASK/<images, anywhere below the task folder>
    ROOT/TASK/classes.txt                                               (optional: one class name per line)

Paths in the list files are relative to the task folder. Labels are integers in ``[0, num_classes)`` where
``num_classes`` is the canonical count of :data:`VTAB_TASKS`. Splits ``train`` and ``val`` alias ``train800``
and ``val200``. Nothing is decoded here; images stream during training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .offline_source import vtab_aliases
from .paths import outside_reason
from .sources import Sample, TaskData, register_source

LIST_SPLITS: tuple[str, ...] = ("train800", "val200", "train800val200", "test")
SPLIT_SIZES: dict[str, int] = {"train800": 800, "val200": 200, "train800val200": 1000}
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class VtabTask:
    """One VTAB-1k task: canonical name (as in the paper's tables), group, class count, folder aliases."""

    name: str
    group: str
    num_classes: int
    aliases: tuple[str, ...] = ()


# The 19 tasks of VTAB-1k (vpt-method.md section 8), in the paper's order.
VTAB_TASKS: tuple[VtabTask, ...] = (
    VtabTask("cifar100", "natural", 100, ("cifar", "cifar-100", "cifar_100")),
    VtabTask("caltech101", "natural", 102, ("caltech",)),
    VtabTask("dtd", "natural", 47),
    VtabTask("flowers102", "natural", 102, ("oxford_flowers102", "flowers")),
    VtabTask("pets", "natural", 37, ("oxford_iiit_pet", "oxford_pet")),
    VtabTask("svhn", "natural", 10),
    VtabTask("sun397", "natural", 397, ("sun",)),
    VtabTask("camelyon", "specialized", 2, ("patch_camelyon", "pcam")),
    VtabTask("eurosat", "specialized", 10),
    VtabTask("resisc45", "specialized", 45, ("resisc",)),
    VtabTask("retinopathy", "specialized", 5, ("diabetic_retinopathy",)),
    VtabTask("clevr_count", "structured", 8),
    VtabTask("clevr_dist", "structured", 6, ("clevr_distance",)),
    VtabTask("dmlab", "structured", 6),
    VtabTask("kitti_dist", "structured", 4, ("kitti", "kitti_distance")),
    VtabTask("dsprites_loc", "structured", 16, ("dsprites_location",)),
    VtabTask("dsprites_ori", "structured", 16, ("dsprites_orientation",)),
    VtabTask("smallnorb_azi", "structured", 18, ("smallnorb_azimuth",)),
    VtabTask("smallnorb_ele", "structured", 9, ("smallnorb_elevation",)),
)
VTAB_GROUPS: tuple[str, ...] = ("natural", "specialized", "structured")


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


_BY_KEY: dict[str, VtabTask] = {}
for _t in VTAB_TASKS:
    for _n in (_t.name, *_t.aliases):
        _BY_KEY[_key(_n)] = _t


def find_vtab_task(name: str) -> VtabTask | None:
    """The canonical task for a name or folder alias (case-insensitive, ``-`` = ``_``), or None."""
    return _BY_KEY.get(_key(name))


def resolve_task_dir(root: Path, name: str, aliases: tuple[str, ...]) -> Path | None:
    """``root/name`` if it exists, else the first existing ``root/alias``; None when none exists."""
    for candidate in (name, *aliases):
        if (root / candidate).is_dir():
            return root / candidate
    return None


def parse_list_line(text: str, num_classes: int | None) -> tuple[str, int] | str:
    """``"path LABEL"`` -> (path, label), or a problem description."""
    parts = text.rsplit(None, 1)
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        return f"expected 'relative/path.jpg LABEL', got {text!r}"
    label = int(parts[1])
    if label < 0 or (num_classes is not None and label >= num_classes):
        limit = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        return f"label {label} is outside {limit} for this task"
    reason = outside_reason(parts[0])
    return reason if reason else (parts[0], label)


def iter_list_file(path: Path, num_classes: int | None) -> Iterator[tuple[int, tuple[str, int] | str]]:
    """Yield ``(line_number, (path, label) or problem)`` for the non-blank lines, streaming the file."""
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                yield line_no, parse_list_line(line.strip(), num_classes)


def parse_list_file(path: Path, num_classes: int | None) -> list[tuple[str, int, int]]:
    """Parse one list file into ``(relative_path, label, line_number)``.

    Raises:
        DataError: Missing file, malformed line or label outside ``[0, num_classes)`` (names file and line).
    """
    if not path.is_file():
        raise DataError(f"list file '{path}' is missing (expected {', '.join(s + '.txt' for s in LIST_SPLITS)})")
    rows: list[tuple[str, int, int]] = []
    for line_no, parsed in iter_list_file(path, num_classes):
        if isinstance(parsed, str):
            raise DataError(f"{path}, line {line_no}: {parsed}")
        rows.append((parsed[0], parsed[1], line_no))
    if not rows:
        raise DataError(f"list file '{path}' has no lines (expected 'relative/path.jpg LABEL' per line)")
    return rows


def read_class_names(folder: Path, num_classes: int | None) -> list[str] | None:
    """Class names from ``classes.txt`` (checked against the canonical count), or None when absent."""
    path = folder / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"'{path}' lists {len(names)} classes but this task has {num_classes}")
    return names


def task_layout(arg: str) -> tuple[Path, str, VtabTask | None]:
    """Resolve ``ROOT/TASK`` into (task folder, task name, canonical task or None)."""
    given = Path(arg).expanduser()
    name = given.name
    task = find_vtab_task(name)
    folder = resolve_task_dir(given.parent, name, task.aliases + (task.name,) if task else ())
    if folder is None:
        known = ", ".join(t.name for t in VTAB_TASKS)
        raise DataError(f"VTAB-1k task folder '{given}' does not exist (tasks: {known}; folder aliases accepted)")
    return folder, task.name if task else name, task


@register_source("vtab1k")
def load_vtab1k(arg: str, options: dict[str, Any]) -> TaskData:
    """Load ``ROOT/TASK``; unknown task names need a ``classes.txt`` that sets their class count."""
    folder, name, task = task_layout(arg)
    num_classes = task.num_classes if task else None
    classes = read_class_names(folder, num_classes)
    if task is None and classes is None:
        known = ", ".join(t.name for t in VTAB_TASKS)
        raise DataError(
            f"'{folder.name}' is not a VTAB-1k task ({known}); add '{folder / CLASSES_FILE}' to use it as a custom task"
        )
    n = num_classes if num_classes is not None else len(classes or [])
    splits: dict[str, list[Sample]] = {}
    for split in LIST_SPLITS:
        list_file = folder / f"{split}.txt"
        rows = parse_list_file(list_file, n)
        for rel, _, line_no in rows:  # a stat per image: cheap, and a missing file fails before training
            if not (folder / rel).is_file():
                raise DataError(f"{list_file}, line {line_no}: image '{folder / rel}' does not exist")
        splits[split] = [(str(folder / rel), label) for rel, label, _ in rows]
    names = classes or [str(i) for i in range(n)]
    return TaskData(name=name, classes=names, splits=vtab_aliases(splits))  # type: ignore[arg-type]
