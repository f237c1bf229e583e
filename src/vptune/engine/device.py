"""Device selection and mixed precision."""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: '{name}' is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: '{name}' requested but CUDA is not available; use --device cpu (or auto)")
    return device


def autocast_factory(device: torch.device, amp: str) -> tuple[Callable[[], Any], torch.dtype | None]:
    """A context-manager factory for the forward pass: bf16/fp16 on CUDA, fp32 (no autocast) elsewhere."""
    if amp == "off" or device.type != "cuda":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            print(f"note: amp={amp} is only used on CUDA; training in fp32 on {device.type}", file=sys.stderr)
        return contextlib.nullcontext, None
    if amp == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush subnormal floats to zero in CPU kernels while the block runs (restored afterwards).

    Subnormals (|x| < 1.2e-38 in fp32) appear in softmax and its gradient when attention logits grow large, as in
    the unstable runs at the top of a learning-rate grid, and take a slow path on x86 CPUs: such steps ran up to
    4.4x slower (``benchmarks/denormals.py``, docs/performance.md). Flushing changes results only below 1.2e-38.
    The flag is process-wide; it has no effect on CUDA kernels.
    """
    if not enabled:
        yield
        return
    # torch exposes no getter for the flag; it is off by default, so restore "off" afterwards.
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
