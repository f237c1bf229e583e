"""``export_task``: a task folder -> one self-contained model file (+ a JSON of its metadata beside it)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..engine.io import atomic_write, write_json
from ..methods.lora import LoRALinear, merge_lora
from ..tasks import TaskArtifact, load_task
from .base import INPUT_NAME, OUTPUT_NAME, ExportError, ExportFormat, get_format
from .check import ATOL, check_images, compare_logits

FORMAT = "vptune-export"
FORMAT_VERSION = 1
EXAMPLE_BATCH = 2  # traced/exported with 2 images so no exporter specialises the batch axis to 1
# fields of the embedded metadata that must equal the task's for a file to belong to it
TASK_FIELDS = ("classes", "preprocessing", "method", "backbone")


@dataclass
class ExportResult:
    """What :func:`export_task` wrote."""

    path: Path
    meta_path: Path
    format: str
    meta: dict[str, Any]
    check: dict[str, Any] | None = field(default=None)

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size

    def summary(self) -> dict[str, Any]:
        """What ``vptune export`` prints."""
        return {
            "path": str(self.path),
            "metadata": str(self.meta_path),
            "format": self.format,
            "exporter": self.meta.get("exporter"),
            "bytes": self.bytes,
            "classes": len(self.meta["classes"]),
            "check": self.check if self.check is not None else "skipped (--no-check)",
        }


class LogitsOnly(nn.Module):
    """``images (B, 3, H, W) -> logits (B, C)``: the one signature every exported file has."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def sidecar_path(out: Path) -> Path:
    """The JSON written beside an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    return out.with_name(out.name + ".json")


def task_metadata(task: TaskArtifact, fmt: ExportFormat, in_chans: int, lora_merged: int) -> dict[str, Any]:
    """The metadata stored in the exported file: how to feed it and what its outputs mean."""
    height, width = task.preprocessing["input_size"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vptune_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_format": fmt.name,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", in_chans, height, width],
            "dtype": "float32",
            "layout": "RGB, resized then normalised with preprocessing.mean/std (see preprocessing)",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(task.classes)], "dtype": "float32"},
        "classes": task.classes,
        "preprocessing": task.preprocessing,
        "method": task.method,
        "backbone": {"name": task.backbone["name"], "hash": task.backbone["hash"]},
        "lora_merged_layers": lora_merged,
        "task_metrics": task.meta.get("metrics", {}),
    }


def _check_file(
    fmt: ExportFormat, path: Path, task: TaskArtifact, batch: torch.Tensor, reference: torch.Tensor, atol: float
) -> dict[str, Any]:
    """Metadata round-trip against the task, then logits against PyTorch's."""
    meta = fmt.read_meta(path)
    if meta.get("format") != FORMAT:
        raise ExportError(f"'{path}' carries no vptune export metadata; export it with vptune export")
    for key in TASK_FIELDS:
        want = getattr(task, key) if key != "backbone" else {k: task.backbone[k] for k in ("name", "hash")}
        if meta.get(key) != want:
            raise ExportError(
                f"'{path}': metadata field '{key}' differs from task '{task.path}' "
                f"({str(meta.get(key))[:80]} vs {str(want)[:80]}); the file was exported from another task"
            )
    return compare_logits(fmt.runner(path), batch, reference, path, atol)


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    for path in paths:
        if path.is_dir():
            raise ExportError(f"output '{path}' is a folder; give a file name such as '{path / 'model.onnx'}'")
        if path.exists() and not overwrite:
            raise ExportError(f"output '{path}' exists; choose another --out or pass --overwrite to replace it")


@torch.no_grad()
def export_task(
    task_dir: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    *,
    check: bool = True,
    overwrite: bool = False,
    images: Sequence[str | Path] | None = None,
    atol: float = ATOL,
    exporter: str = "auto",
    **backbone: Any,
) -> ExportResult:
    """Export a task folder as one self-contained model file ``images -> logits`` with a dynamic batch axis.

    The file holds the backbone, the method's tensors and the head (LoRA updates merged into the backbone's
    weights); class names and preprocessing are in its metadata and in ``OUT.json`` beside it. Both are
    written atomically; nothing existing is replaced unless ``overwrite``.

    Args:
        task_dir: A task folder (``task.json`` + ``task.safetensors``).
        format: ``onnx`` or ``torchscript``.
        out: The model file to write; default ``TASK_DIR/model.onnx`` (or ``model.pt``).
        check: Run the written file on real images through the task's preprocessing and require its logits to
            equal PyTorch's within ``atol`` (the file is not kept otherwise).
        overwrite: Replace an existing output file and its JSON.
        images: Image files for the check (default: the task's own test data, else the bundled digits).
        atol: Largest allowed absolute logit difference.
        exporter: ONNX only: ``auto`` (dynamo, falling back to the TorchScript-based exporter), ``dynamo`` or
            ``torchscript``.
        **backbone: ``model_name``, ``weights`` or ``pretrained`` overrides, as for :func:`vptune.tasks.load_task`.

    Raises:
        ExportError: Unknown format, an existing output, a failed export or a failed check.
    """
    fmt = get_format(format)
    out_path = Path(out) if out is not None else Path(task_dir) / f"model{fmt.suffix}"
    meta_path = sidecar_path(out_path)
    _refuse_existing([out_path, meta_path], overwrite)
    from ..tasks import read_task

    if read_task(task_dir).task_type == "segmentation":  # sliding-window inference lives outside the graph
        raise ExportError(f"task '{task_dir}' is a segmentation task; export supports classification tasks only")
    model, task = load_task(task_dir, device="cpu", **backbone)
    model = model.float().eval()
    batch, source = check_images(task, images) if check else (None, "")
    reference = model(batch).float() if batch is not None else None  # before any LoRA merge: the task as trained
    lora_layers = sum(isinstance(m, LoRALinear) for m in model.modules())
    merge_lora(model)
    meta = task_metadata(task, fmt, model.info.in_chans, lora_layers)
    height, width = task.preprocessing["input_size"]
    example = torch.randn(EXAMPLE_BATCH, model.info.in_chans, height, width, generator=torch.Generator().manual_seed(0))
    wrapper = LogitsOnly(model).eval()
    written: dict[str, Any] = {}

    def write(tmp: str) -> None:
        written["info"] = fmt.write(wrapper, example, Path(tmp), meta, exporter)
        if batch is not None:
            written["check"] = {"source": source, **_check_file(fmt, Path(tmp), task, batch, reference, atol)}

    atomic_write(out_path, write)
    full = {**meta, **written["info"], "file": out_path.name, "check": written.get("check")}
    write_json(meta_path, full)
    return ExportResult(out_path, meta_path, fmt.name, full, written.get("check"))


@torch.no_grad()
def check_export(
    path: str | Path,
    task_dir: str | Path,
    *,
    format: str | None = None,
    images: Sequence[str | Path] | None = None,
    atol: float = ATOL,
    **backbone: Any,
) -> dict[str, Any]:
    """Check an exported file against its task: same metadata, logits within ``atol`` of PyTorch's.

    Args:
        path: The exported file.
        task_dir: The task folder it was exported from.
        format: ``onnx`` or ``torchscript``; default from the file suffix (``.onnx`` or ``.pt``).
        images: Image files for the check (default as in :func:`export_task`).
        atol: Largest allowed absolute logit difference.

    Returns:
        The check result: ``source``, ``images``, ``max_abs_diff``, ``atol``, ``same_top1``.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"exported file '{path}' does not exist")
    if format is None:
        by_suffix = {get_format(n).suffix: n for n in ("onnx", "torchscript")}
        if path.suffix not in by_suffix:
            raise ExportError(
                f"cannot tell the format of '{path}' from its suffix; pass format='onnx' or 'torchscript'"
            )
        format = by_suffix[path.suffix]
    fmt = get_format(format)
    model, task = load_task(task_dir, device="cpu", **backbone)
    batch, source = check_images(task, images)
    reference = model.float().eval()(batch).float()
    return {"source": source, **_check_file(fmt, path, task, batch, reference, atol)}
