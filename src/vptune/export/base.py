"""What every export format shares: the error type, the lazy import of the optional extra, the registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..errors import VptuneError

EXTRA_HINT = "pip install 'vptune[export]'"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


class ExportError(VptuneError):
    """An export that cannot be written or an exported file that does not reproduce the task's logits."""


def require(module: str) -> ModuleType:
    """Import an optional dependency of the ``export`` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExportError(f"exporting needs the '{module}' package ({err}); install the extra: {EXTRA_HINT}") from None


class ExportFormat(ABC):
    """One file format: write a model with its metadata into one file, read both back, run it."""

    name: str
    suffix: str

    @abstractmethod
    def write(
        self, model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any], exporter: str = "auto"
    ) -> dict[str, Any]:
        """Write ``model`` (``images (B, 3, H, W) -> logits (B, C)``) and ``meta`` into ``path``.

        ``exporter`` picks among the format's exporters; ``auto`` is the format's default.

        Returns:
            What was used to write it (``exporter``, ``opset``, ...), recorded in the sidecar JSON.
        """

    @abstractmethod
    def read_meta(self, path: Path) -> dict[str, Any]:
        """The metadata stored inside the file."""

    @abstractmethod
    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A function running the file on a float32 batch (B, 3, H, W) and returning logits (B, C)."""


FORMATS: dict[str, ExportFormat] = {}


def register_format(cls: type[ExportFormat]) -> type[ExportFormat]:
    """Class decorator: make a format available by its ``name``."""
    FORMATS[cls.name] = cls()
    return cls


def get_format(name: str) -> ExportFormat:
    """The registered format called ``name``, or an error listing the known ones."""
    from . import onnx_format, torchscript_format  # noqa: F401  (register formats)

    if name not in FORMATS:
        raise ExportError(f"unknown export format '{name}'; choose one of: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def format_names() -> list[str]:
    """The registered format names, sorted."""
    from . import onnx_format, torchscript_format  # noqa: F401  (register formats)

    return sorted(FORMATS)
