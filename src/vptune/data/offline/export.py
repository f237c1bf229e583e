"""Writes an offline task to disk in a VTAB-1k-style folder layout (PNG images plus split list files)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

LIST_SPLITS: tuple[str, ...] = ("train800", "val200", "train800val200", "test")


def write_vtab_layout(
    name: str,
    classes: tuple[str, ...],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    root: str | Path,
) -> Path:
    """Writes ``ROOT/NAME`` atomically.

    Layout::

        NAME/images/train800val200_00000.png ...   (train800 = indices 0-799, val200 = 800-999)
        NAME/images/test_00000.png ...
        NAME/train800.txt, val200.txt, train800val200.txt, test.txt   ("images/xxx.png LABEL" per line)
        NAME/classes.txt                                              (one class name per line, index = label)

    Everything is written into a temporary folder beside the target and renamed into place at the end, so
    the target either does not exist or is complete.

    Args:
        name: Task name (folder name).
        classes: Class names, index = label.
        splits: Output of ``load_offline_task``: the four splits as ``(images, labels)``.
        root: Parent folder; created if missing.

    Returns:
        The task folder ``ROOT/NAME``.

    Raises:
        FileExistsError: If ``ROOT/NAME`` exists already.
    """
    root = Path(root)
    target = root / name
    if target.exists():
        raise FileExistsError(f"{target} exists already; remove it or choose another root")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        (tmp / "images").mkdir()
        lines: dict[str, list[str]] = {}
        for prefix in ("train800val200", "test"):
            images, labels = splits[prefix]
            lines[prefix] = []
            for i, (img, label) in enumerate(zip(images, labels, strict=True)):
                rel = f"images/{prefix}_{i:05d}.png"
                Image.fromarray(np.asarray(img)).save(tmp / rel)
                lines[prefix].append(f"{rel} {int(label)}\n")
        n_train = len(splits["train800"][1])
        lines["train800"] = lines["train800val200"][:n_train]
        lines["val200"] = lines["train800val200"][n_train:]
        for split in LIST_SPLITS:
            (tmp / f"{split}.txt").write_text("".join(lines[split]))
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
        tmp.chmod(0o755)  # mkdtemp creates the folder owner-only
        try:
            os.rename(tmp, target)  # atomic on one filesystem; fails if target appeared meanwhile
        except OSError as exc:
            if target.exists():
                raise FileExistsError(f"{target} exists already; remove it or choose another root") from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
