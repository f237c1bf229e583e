"""Provenance of a benchmark run: code version, library versions, device and peak memory."""

from __future__ import annotations

import functools
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the vptune source checkout; None fields when git or the repo is absent."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(dirty)}


def versions() -> dict[str, str]:
    """vptune, torch, timm, torchvision, numpy and Python versions."""
    import numpy
    import timm
    import torchvision

    from .. import __version__

    return {
        "vptune": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: str | torch.device) -> dict[str, Any]:
    """The device in words: type, name and platform."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    return {
        "device": str(dev),
        "device_name": name,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh CUDA peak-memory window (CPU RSS peaks cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """CUDA: max allocated bytes since the reset. CPU: the process's max RSS so far (a lifetime high-water mark)."""
    if device.type == "cuda":
        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
            "peak_memory_kind": "cuda_max_allocated",
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return {"peak_memory_bytes": int(rss * scale), "peak_memory_kind": "process_max_rss"}
