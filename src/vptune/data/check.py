"""``vptune data check``: validate a VTAB-1k / FGVC / offline tree before any training.

Reports missing tasks, missing or malformed list files, labels outside the canonical class count, split sizes
and unreadable images. Images are opened and verified with PIL one at a time (each unique file once), so
nothing is ever loaded whole into memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from ..errors import ConfigError, DataError
from .fgvc import FGVC_DATASETS, FGVC_SPLITS, find_fgvc_dataset, find_image_root, read_split_json
from .vtab import (
    CLASSES_FILE,
    LIST_SPLITS,
    SPLIT_SIZES,
    VTAB_TASKS,
    find_vtab_task,
    iter_list_file,
    read_class_names,
    resolve_task_dir,
)

Suite = Literal["vtab1k", "fgvc", "offline"]
MAX_PROBLEMS_PER_FILE = 20


class _Task:
    """Collects the findings for one task."""

    def __init__(self, name: str, folder: Path | None, num_classes: int | None) -> None:
        self.info: dict[str, Any] = {
            "task": name,
            "folder": str(folder) if folder else None,
            "num_classes": num_classes,
            "splits": {},
            "problems": [],
        }

    def problem(self, level: str, message: str) -> None:
        self.info["problems"].append({"level": level, "message": message})

    def done(self) -> dict[str, Any]:
        levels = {p["level"] for p in self.info["problems"]}
        self.info["status"] = "error" if "error" in levels else ("warning" if levels else "ok")
        return self.info


def verify_image(path: Path) -> str | None:
    """None when PIL can open and verify ``path``, else the reason."""
    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError:
        return "does not exist"
    except Exception as err:  # noqa: BLE001 - any decoder error means the same to the user
        return f"unreadable ({type(err).__name__}: {err})"
    return None


def _check_images(t: _Task, where: str, paths: Iterable[tuple[str, Path]], verify: bool, seen: set[str]) -> int:
    """Check existence (and PIL validity) of each ``(line_ref, path)``; returns the number of bad images."""
    bad = 0
    for ref, path in paths:
        key = str(path)
        if key in seen:
            continue
        seen.add(key)
        reason = verify_image(path) if verify else (None if path.is_file() else "does not exist")
        if reason:
            bad += 1
            if bad <= MAX_PROBLEMS_PER_FILE:
                t.problem("error", f"{where}, {ref}: image '{path}' {reason}")
    if bad > MAX_PROBLEMS_PER_FILE:
        t.problem("error", f"{where}: {bad} bad images in all ({bad - MAX_PROBLEMS_PER_FILE} not listed)")
    return bad


def check_list_task(name: str, folder: Path, num_classes: int | None, sizes: dict[str, int], verify: bool) -> _Task:
    """Check one VTAB-1k-layout task folder (list files, labels, sizes, images)."""
    if num_classes is None:  # a custom task: classes.txt sets the class count
        names = read_class_names(folder, None)
        num_classes = len(names) if names else None
    t = _Task(name, folder, num_classes)
    if num_classes is None:
        t.problem("error", f"'{name}' is not a VTAB-1k task and '{folder / CLASSES_FILE}' is missing")
        return t
    try:
        read_class_names(folder, num_classes)
    except DataError as err:
        t.problem("error", str(err))
    seen: set[str] = set()
    for split in LIST_SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            t.problem("error", f"list file '{path}' is missing")
            continue
        rows, labels, bad_lines = [], set(), 0
        for line_no, parsed in iter_list_file(path, num_classes):
            if isinstance(parsed, str):
                bad_lines += 1
                if bad_lines <= MAX_PROBLEMS_PER_FILE:
                    t.problem("error", f"{path}, line {line_no}: {parsed}")
                continue
            rows.append((f"line {line_no}", folder / parsed[0]))
            labels.add(parsed[1])
        bad_images = _check_images(t, str(path), rows, verify, seen)
        n = len(rows) + bad_lines
        expected = sizes.get(split)
        t.info["splits"][split] = {"n": n, "expected": expected, "classes_seen": len(labels), "bad_images": bad_images}
        if expected is not None and n != expected:
            t.problem("error", f"{path}: {n} lines, expected {expected} for VTAB-1k")
        if n == 0:
            t.problem("error", f"{path}: no lines")
    return t


def check_fgvc_dataset(folder: Path, ds: Any, verify: bool) -> _Task:
    """Check one FGVC folder (JSON files, class ids, image root, images)."""
    t = _Task(ds.name, folder, ds.num_classes)
    raw: dict[str, dict[str, int]] = {}
    for split in FGVC_SPLITS:
        try:
            raw[split] = read_split_json(folder / f"{split}.json")
        except DataError as err:
            t.problem("error", str(err))
    if "train" not in raw:
        return t
    train_ids = set(raw["train"].values())
    if len(train_ids) > ds.num_classes:
        t.problem(
            "error", f"{folder / 'train.json'}: {len(train_ids)} distinct class ids, {ds.name} has {ds.num_classes}"
        )
    elif len(train_ids) < ds.num_classes:
        t.problem("warning", f"{folder / 'train.json'}: only {len(train_ids)} of {ds.num_classes} classes occur")
    try:
        image_root = find_image_root(folder, ds, next(iter(raw["train"])))
    except DataError as err:
        t.problem("error", str(err))
        return t
    seen: set[str] = set()
    for split, entries in raw.items():
        where = str(folder / f"{split}.json")
        unknown = [rel for rel, cid in entries.items() if cid not in train_ids]
        for rel in unknown[:MAX_PROBLEMS_PER_FILE]:
            t.problem("error", f"{where}, entry '{rel}': class id {entries[rel]} does not occur in train.json")
        rows = ((f"entry '{rel}'", image_root / rel) for rel in entries)
        bad_images = _check_images(t, where, rows, verify, seen)
        t.info["splits"][split] = {
            "n": len(entries),
            "classes_seen": len(set(entries.values())),
            "bad_images": bad_images,
        }
    return t


def check_offline_task(name: str) -> _Task:
    """Generate one offline task in memory and check shapes, labels and split sizes."""
    import numpy as np

    from .offline import get_offline_task, load_offline_task

    task = get_offline_task(name)
    t = _Task(name, None, task.num_classes)
    sizes = {**SPLIT_SIZES, "test": task.max_test}
    for split, (images, labels) in load_offline_task(name).items():
        s = task.image_size
        if images.shape[1:] != (s, s, 3) or images.dtype != np.uint8:
            t.problem("error", f"{name}/{split}: images {images.shape} {images.dtype}, expected (n, {s}, {s}, 3) uint8")
        if labels.size and (labels.min() < 0 or labels.max() >= task.num_classes):
            t.problem("error", f"{name}/{split}: labels outside [0, {task.num_classes})")
        t.info["splits"][split] = {
            "n": len(labels),
            "expected": sizes[split],
            "classes_seen": len(set(labels.tolist())),
        }
        if len(labels) != sizes[split]:
            t.problem("error", f"{name}/{split}: {len(labels)} images, expected {sizes[split]}")
    return t


def check_suite(
    suite: Suite, root: str | Path | None, tasks: list[str] | None = None, verify_images: bool = True
) -> dict[str, Any]:
    """Validate a benchmark tree (or, for ``offline`` without a root, the generated tasks).

    Args:
        suite: ``vtab1k`` (ROOT/TASK list-file folders), ``fgvc`` (ROOT/NAME JSON folders) or ``offline``.
        root: The tree's root folder (``offline``: an exported tree, or None for the in-memory tasks).
        tasks: Task names to check (default: every task of the suite).
        verify_images: Open and verify every image with PIL (else only check that files exist).

    Returns:
        ``{"suite", "root", "ok", "errors", "warnings", "tasks": [per-task findings]}``.
    """
    from .offline import get_offline_task, list_offline_tasks

    results: list[dict[str, Any]] = []
    base = Path(root).expanduser() if root is not None else None
    if suite in ("vtab1k", "fgvc") and (base is None or not base.is_dir()):
        raise DataError(f"--root '{root}' is not a folder (expected ROOT/TASK folders for {suite})")
    if suite == "vtab1k":
        for name in tasks or [t.name for t in VTAB_TASKS]:
            vt = find_vtab_task(name)
            folder = resolve_task_dir(base, vt.name if vt else name, vt.aliases if vt else ())  # type: ignore[arg-type]
            results.append(
                _missing(name, base, vt)
                if folder is None
                else check_list_task(
                    vt.name if vt else name, folder, vt.num_classes if vt else None, SPLIT_SIZES, verify_images
                ).done()
            )
    elif suite == "fgvc":
        for name in tasks or [d.name for d in FGVC_DATASETS]:
            ds = find_fgvc_dataset(name)
            if ds is None:
                raise ConfigError(
                    f"--tasks: '{name}' is not an FGVC data set ({', '.join(d.name for d in FGVC_DATASETS)})"
                )
            folder = resolve_task_dir(base, ds.name, ds.aliases)  # type: ignore[arg-type]
            results.append(
                _missing(ds.name, base, ds) if folder is None else check_fgvc_dataset(folder, ds, verify_images).done()
            )
    elif suite == "offline":
        for name in tasks or [t.name for t in list_offline_tasks()]:
            try:
                task = get_offline_task(name)
            except ValueError as err:
                raise ConfigError(f"--tasks: {err}") from None
            if base is None:
                results.append(check_offline_task(name).done())
                continue
            folder = resolve_task_dir(base, name, ())
            sizes = {**SPLIT_SIZES, "test": task.max_test}
            results.append(
                _missing(name, base, None)
                if folder is None
                else check_list_task(name, folder, task.num_classes, sizes, verify_images).done()
            )
    else:
        raise ConfigError(f"--suite: '{suite}' is not one of vtab1k, fgvc, offline")
    errors = sum(p["level"] == "error" for r in results for p in r["problems"])
    warnings = sum(p["level"] == "warning" for r in results for p in r["problems"])
    return {
        "suite": suite,
        "root": str(base) if base else None,
        "ok": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "tasks": results,
    }


def _missing(name: str, base: Path | None, entry: Any) -> dict[str, Any]:
    t = _Task(name, None, getattr(entry, "num_classes", None))
    tried = ", ".join((name, *getattr(entry, "aliases", ())))
    t.problem("error", f"task folder missing: none of {tried} exists under '{base}'")
    info = t.done()
    info["status"] = "missing"
    return info


def format_report(report: dict[str, Any]) -> str:
    """Human-readable summary: one line per task, then its problems indented."""
    lines = [f"data check: suite {report['suite']}, root {report['root'] or '(generated in memory)'}"]
    for r in report["tasks"]:
        sizes = ", ".join(f"{s} {v['n']}" for s, v in r["splits"].items())
        classes = f"{r['num_classes']} classes" if r["num_classes"] else "classes unknown"
        lines.append(f"  [{r['status'].upper():>7}] {r['task']:<22} {classes}; {sizes or 'no splits read'}")
        lines += [f"            {p['level']}: {p['message']}" for p in r["problems"]]
    verdict = "OK" if report["ok"] else "FAILED"
    lines.append(f"{verdict}: {len(report['tasks'])} tasks, {report['errors']} errors, {report['warnings']} warnings")
    return "\n".join(lines)
