"""TorchScript: ``torch.jit.trace`` of ``images -> logits``, metadata as the archive's extra file ``vptune.json``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ExportError, ExportFormat, register_format

META_NAME = "vptune.json"


@register_format
class TorchScriptFormat(ExportFormat):
    """One ``.pt`` TorchScript archive; load it with ``torch.jit.load`` (no vptune or timm needed)."""

    name = "torchscript"
    suffix = ".pt"

    def write(
        self, model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any], exporter: str = "auto"
    ) -> dict[str, Any]:
        if exporter != "auto":
            raise ExportError(f"exporter '{exporter}' applies to ONNX only; TorchScript is always written by tracing")
        info = {"exporter": f"torch.jit.trace (torch {torch.__version__})"}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on Python ints taken from shapes; deprecation notes
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={META_NAME: json.dumps({**meta, **info})})
        return info

    def _load(self, path: Path, files: dict[str, Any]) -> torch.jit.ScriptModule:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 marks TorchScript as deprecated
                return torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except Exception as err:  # noqa: BLE001  (torch raises several types for damaged archives)
            raise ExportError(f"'{path}' is not a readable TorchScript file ({err}); export it again") from None

    def read_meta(self, path: Path) -> dict[str, Any]:
        files = {META_NAME: ""}
        self._load(path, files)
        try:
            return json.loads(files[META_NAME] or "{}")
        except json.JSONDecodeError as err:
            raise ExportError(f"'{path}': {META_NAME} is not valid JSON ({err}); export it again") from None

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        module = self._load(path, {}).eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(batch)).numpy()

        return run
