"""The output folder of a training run: named after data and method, never overwritten without being asked.

A folder holds at most one run. Before training, :func:`check_run_folder` tells apart a new folder, an
unfinished run of the same settings (``fit`` resumes it from its checkpoint), the same run already finished
(nothing to do) and a finished run of other settings (refused unless ``overwrite``, then its files are removed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

RUN_FILES = ("task.json", "task.safetensors", "metrics.jsonl", "checkpoint.pt")
RUNS_ROOT = "runs"


def default_out(data_spec: str, method: str) -> str:
    """``runs/DATA-METHOD``: ``offline:digits`` + ``vpt-deep`` -> ``runs/digits-vpt-deep``.

    DATA is the last path part of the spec without extension (``folder:/data/pets`` -> ``pets``,
    ``csv:/x/labels.csv`` -> ``labels``, ``vtab1k:ROOT/cifar`` -> ``cifar``).
    """
    target = data_spec.split(":", 1)[-1].rstrip("/\\") or "data"
    name = Path(target).stem or Path(target).name or "data"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "data"
    return f"{RUNS_ROOT}/{name}-{method}"


@dataclass(frozen=True)
class FolderState:
    """What :func:`check_run_folder` found. ``kind``: new, resume, done (same settings) or replaced."""

    kind: Literal["new", "resume", "done", "replaced"]
    path: Path
    metrics: dict[str, Any]


def _finished_config(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / "task.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def check_run_folder(config: dict[str, Any], *, overwrite: bool = False) -> FolderState:
    """Decide what training into ``config["out"]`` means, before anything is written.

    Args:
        config: The run configuration as a dict (``RunConfig.to_dict()``).
        overwrite: Replace a finished run of other settings (its files are removed first).

    Raises:
        ConfigError: The folder holds a finished run of other settings and ``overwrite`` is false.
    """
    from .engine.checkpoint import CHECKPOINT_FILE, config_fingerprint

    path = Path(config["out"])
    if (path / CHECKPOINT_FILE).is_file():
        return FolderState("resume", path, {})  # fit checks the checkpoint's settings itself
    if not (path / "task.json").is_file():
        return FolderState("new", path, {})
    meta = _finished_config(path) or {}
    previous = meta.get("train_config") or {}
    if previous and config_fingerprint(previous) == config_fingerprint(config) and not overwrite:
        return FolderState("done", path, dict(meta.get("metrics", {})))
    if not overwrite:
        what = f"method {meta.get('method', {}).get('name', '?')} on {previous.get('data', {}).get('spec', '?')}"
        raise ConfigError(
            f"--out '{path}' holds a finished task of another run ({what}); pass --overwrite to replace it, "
            f"or choose another --out"
        )
    for name in RUN_FILES:  # task.json first: the folder stops being a finished task before tensors go
        (path / name).unlink(missing_ok=True)
    return FolderState("replaced", path, {})
