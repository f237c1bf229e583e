"""Export a task as one self-contained ONNX or TorchScript file (needs the ``export`` extra for ONNX)."""

from .api import ExportResult, check_export, export_task, sidecar_path
from .base import EXTRA_HINT, ExportError, format_names
from .check import ATOL

__all__ = [
    "ATOL",
    "EXTRA_HINT",
    "ExportError",
    "ExportResult",
    "check_export",
    "export_task",
    "format_names",
    "sidecar_path",
]
