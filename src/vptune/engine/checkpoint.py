"""Per-epoch training checkpoints, written atomically, holding everything needed to resume exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import VptuneError
from .io import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
# train.* settings that do not change what is computed (a run may resume with other values of these)
NOT_TRAJECTORY = (
    "progress",
    "device",
    "compile",
    "feature_cache",
    "feature_cache_max_gb",
    "dist_backend",
    "dist_timeout_min",
    "logger",
)
# keys added after runs were first fingerprinted: left out at these defaults, so earlier runs still resume
LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"auto_augment": None, "reprob": 0.0, "mixup": 0.0, "cutmix": 0.0, "mixup_prob": 1.0, "task": "auto"},
    "train": {"clip_grad": None, "keep_best": False, "early_stop": None},
}


def _default_seg() -> dict[str, Any]:
    from ..seg.config import SegConfig

    return SegConfig().model_dump(mode="json")


def config_fingerprint(config: dict[str, Any]) -> str:
    """Hash of the settings that determine the training trajectory (output folder and progress excluded)."""
    relevant = {k: v for k, v in config.items() if k != "out"}
    relevant["train"] = {k: v for k, v in relevant.get("train", {}).items() if k not in NOT_TRAJECTORY}
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in defaults or defaults[k] != v}
    if relevant.get("seg") == _default_seg():  # the seg section, added later, at its defaults
        relevant.pop("seg")
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    atomic_write(out_dir / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def load_checkpoint(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state, or None when there is none; a checkpoint of other settings is an error."""
    path = out_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise VptuneError(f"checkpoint '{path}' cannot be read ({err}); delete it to start over") from None
    if state.get("fingerprint") != fingerprint:
        raise VptuneError(
            f"'{out_dir}' holds a checkpoint of a run with other settings; use another --out, or delete "
            f"'{path}' to start this run from scratch"
        )
    return state
