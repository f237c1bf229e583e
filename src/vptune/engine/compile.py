"""Optional ``torch.compile`` of the training forward, falling back to eager execution when it fails."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn


class CompiledForward(nn.Module):
    """Calls ``torch.compile(module)``; the first compile error switches to eager ``module`` for good.

    Compilation is lazy (it happens on the first call), so errors such as a missing C++ compiler on a CPU
    machine surface there; they are reported once on stderr and training continues uncompiled.

    Args:
        module: The module whose forward to compile (a model, a cached tail or a DDP wrapper).
        verbose: Print the fallback note.
    """

    def __init__(self, module: nn.Module, verbose: bool = True) -> None:
        super().__init__()
        self.module = module
        self.verbose = verbose
        self.failed = False
        self.num_classes = int(getattr(module, "num_classes", 0))  # read by evaluate() for top-5
        self.__dict__["compiled"] = torch.compile(module)  # not a submodule: no duplicate state_dict entries

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.__dict__["compiled"](*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back to eager
                self.failed = True
                if self.verbose:
                    reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                    print(f"note: train.compile: torch.compile failed ({reason}); running eagerly", file=sys.stderr)
        return self.module(*args, **kwargs)


def maybe_compile(module: nn.Module, enabled: bool, verbose: bool = True) -> nn.Module:
    """``module`` wrapped in :class:`CompiledForward` when ``enabled``, else unchanged."""
    return CompiledForward(module, verbose) if enabled else module
