"""Atomic file writes: write a temporary file beside the target, fsync it, rename it over the target, fsync the
folder. Files get the permissions the umask allows (like ``open``), not ``mkstemp``'s private 0600, and
temporary files left by a crashed writer are removed by the next write of the same target.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STALE_SECONDS = 600.0  # a temporary file this old belongs to a writer that died
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where folders can not be opened, e.g. Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path: str | Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files beside ``path`` older than ``older_than`` seconds; returns what was removed."""
    path = Path(path)
    removed = []
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # another writer renamed or removed it
    return removed


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the result to ``path``; a crash never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write pretty JSON."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")

    atomic_write(path, write)
