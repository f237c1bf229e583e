"""ONNX: ``torch.onnx.export`` (the dynamo exporter, or the TorchScript-based one where dynamo fails).

The graph maps ``images`` (batch, 3, H, W), already preprocessed, to ``logits`` (batch, C) with a dynamic batch
axis. Every metadata field is one ``metadata_props`` entry whose value is JSON, so a consumer with only
onnxruntime reads e.g. the class names as ``json.loads(session.get_modelmeta().custom_metadata_map["classes"])``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import INPUT_NAME, OUTPUT_NAME, ExportError, ExportFormat, register_format, require

OPSET = 18
EXPORTERS = ("auto", "dynamo", "torchscript")


def _export_dynamo(model: torch.nn.Module, example: torch.Tensor) -> Any:
    """The dynamo exporter's ModelProto (weights inside), batch axis symbolic."""
    require("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    return program.model_proto


def _export_torchscript(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> Any:
    """The TorchScript-based exporter's ModelProto, batch axis named ``batch``."""
    onnx = require("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
        )
    return onnx.load(str(tmp))


def set_metadata(proto: Any, meta: dict[str, Any]) -> None:
    """Replace the model's ``metadata_props`` with one JSON-valued entry per field of ``meta``."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


@register_format
class OnnxFormat(ExportFormat):
    """One self-contained ``.onnx`` file (weights inside, no external data)."""

    name = "onnx"
    suffix = ".onnx"

    def write(
        self,
        model: torch.nn.Module,
        example: torch.Tensor,
        path: Path,
        meta: dict[str, Any],
        exporter: str = "auto",
    ) -> dict[str, Any]:
        onnx = require("onnx")
        if exporter not in EXPORTERS:
            raise ExportError(f"unknown ONNX exporter '{exporter}'; choose one of: {', '.join(EXPORTERS)}")
        info: dict[str, Any] = {"opset": OPSET}
        proto = None
        if exporter in ("auto", "dynamo"):
            try:
                proto = _export_dynamo(model, example)
                info["exporter"] = "torch.onnx.export (dynamo)"
            except ExportError:
                raise
            except Exception as err:  # noqa: BLE001  (any exporter failure falls back, with its reason kept)
                if exporter == "dynamo":
                    raise ExportError(f"the dynamo ONNX exporter failed: {str(err).splitlines()[0]}") from err
                info["dynamo_failure"] = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        if proto is None:
            try:
                proto = _export_torchscript(model, example, path)
            except Exception as err:  # noqa: BLE001
                raise ExportError(f"the TorchScript-based ONNX exporter failed: {str(err).splitlines()[0]}") from err
            info["exporter"] = "torch.onnx.export (TorchScript-based, dynamo=False)"
        set_metadata(proto, {**meta, **info})
        onnx.save_model(proto, str(path), save_as_external_data=False)
        return info

    def read_meta(self, path: Path) -> dict[str, Any]:
        onnx = require("onnx")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # noqa: BLE001  (protobuf raises several types for damaged files)
            raise ExportError(f"'{path}' is not a readable ONNX file ({err}); export it again") from None
        try:
            return {p.key: json.loads(p.value) for p in proto.metadata_props}
        except json.JSONDecodeError as err:
            raise ExportError(f"'{path}': metadata is not vptune's JSON ({err}); export it again") from None

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        ort = require("onnxruntime")
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001  (onnxruntime raises its own exception types)
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ExportError(f"onnxruntime cannot load '{path}' ({reason}); export it again") from None
        return lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
