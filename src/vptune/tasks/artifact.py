"""Task artifacts: ``task.json`` (what the task is) + ``task.safetensors`` (only the trained tensors).

Loading validates ``task.json`` against :mod:`vptune.tasks.schema`, rebuilds the backbone it names (never from a
weights path recorded in the file unless the caller opts in), checks its weight hash against the recorded one,
checks the tensors' sha256, names, shapes, dtypes and finiteness, and loads them with safetensors (never pickle,
so a file can not execute code). Saving writes the tensors, then ``task.json`` holding their sha256, each one
atomically: a crash between the two leaves a folder that refuses to load instead of mixing two saves.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from .. import __version__
from ..backbones import create_vit, describe, weights_hash
from ..engine.io import atomic_write, write_json
from ..errors import ArtifactError, VptuneError
from ..methods import build_method
from ..model import AdaptedModel
from .schema import FORMAT, FORMAT_VERSION, check_tensors, parse_meta

META_FILE = "task.json"
TENSOR_FILE = "task.safetensors"


@dataclass
class TaskArtifact:
    """The parsed ``task.json`` of a task folder."""

    path: Path
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def method(self) -> dict[str, Any]:
        return dict(self.meta["method"])

    @property
    def backbone(self) -> dict[str, Any]:
        return dict(self.meta["backbone"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.meta["preprocessing"])

    @property
    def task_type(self) -> str:
        """``classification`` or ``segmentation`` (field ``task``; absent in classification artifacts)."""
        return str((self.meta.get("task") or {}).get("type", "classification"))

    @property
    def tensor_bytes(self) -> int:
        return (self.path / TENSOR_FILE).stat().st_size

    def summary(self) -> dict[str, Any]:
        """What ``vptune inspect`` prints."""
        m = self.meta
        return {
            "path": str(self.path),
            "method": m["method"]["name"],
            "method_config": m["method"],
            "backbone": m["backbone"]["name"],
            "backbone_hash": m["backbone"]["hash"],
            "num_classes": len(m["classes"]),
            "classes": m["classes"],
            "trainable_params": m["params"]["trainable_params"],
            "backbone_params": m["params"]["backbone_params"],
            "trainable_percent": m["params"]["trainable_percent"],
            "artifact_bytes": self.tensor_bytes + (self.path / META_FILE).stat().st_size,
            "metrics": m.get("metrics", {}),
            "preprocessing": m["preprocessing"],
            "vptune_version": m.get("vptune_version"),
        }


def save_task(
    out_dir: str | Path,
    model: AdaptedModel,
    *,
    classes: list[str],
    preprocessing: dict[str, Any],
    backbone_source: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    task_info: dict[str, Any] | None = None,
) -> TaskArtifact:
    """Write the task folder atomically (tensors first; ``task.json`` last marks it complete).

    Args:
        out_dir: Folder to write into (created if missing).
        model: The trained model.
        classes: Class names, index = label.
        preprocessing: From :func:`vptune.data.preprocessing_config`.
        backbone_source: How to rebuild the backbone: ``pretrained``, ``weights``, ``img_size``.
        metrics: Final metrics to record.
        train_config: The full run configuration, for provenance.
        task_info: Field ``task`` (segmentation: decoder, evaluation scale; :class:`vptune.seg.config.TaskKindMeta`).
    """
    out = Path(out_dir)
    if len(classes) != model.num_classes:
        raise ArtifactError(f"{len(classes)} class names for a {model.num_classes}-class head")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.trainable_state_dict().items()}
    try:
        atomic_write(out / TENSOR_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(
            f"could not write '{out / TENSOR_FILE}' ({err}); is the disk full? Nothing was replaced"
        ) from None
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vptune_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": model.method.config.model_dump(mode="json"),
        "output": model.output,
        "backbone": {
            "name": model.info.name,
            "hash": model.backbone_hash,
            "embed_dim": model.info.embed_dim,
            "depth": model.info.depth,
            **backbone_source,
        },
        "classes": list(classes),
        "params": model.parameter_summary(),
        "tensors": {
            "file": TENSOR_FILE,
            "count": len(tensors),
            "numel": sum(t.numel() for t in tensors.values()),
            "sha256": file_sha256(out / TENSOR_FILE),
        },
        "preprocessing": preprocessing,
        "metrics": metrics or {},
        "train_config": train_config or {},
    }
    if task_info:
        meta["task"] = task_info
    try:
        write_json(out / META_FILE, meta)
    except OSError as err:
        raise ArtifactError(
            f"could not write '{out / META_FILE}' ({err}); is the disk full? The folder refuses to load (its "
            "tensors no longer match task.json) until the task is saved again"
        ) from None
    return TaskArtifact(out, meta)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_task(path: str | Path) -> TaskArtifact:
    """Parse and check ``task.json`` without loading any weights."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"'{folder}' is not a task folder: {META_FILE} is missing (train one with vptune train)")
    meta = parse_meta(meta_path)
    if not (folder / TENSOR_FILE).is_file():
        raise ArtifactError(f"'{folder}' lacks {TENSOR_FILE}; the task folder is incomplete")
    return TaskArtifact(folder, meta)


def load_backbone_for(
    task: TaskArtifact,
    *,
    model_name: str | None = None,
    weights: str | None = None,
    pretrained: bool | None = None,
    trust_task_weights: bool = False,
) -> tuple[torch.nn.Module, str]:
    """Rebuild the backbone a task names (or the overriding one) and return it with its weight hash.

    A weights path recorded in ``task.json`` is only opened with ``trust_task_weights=True``: a task file from
    elsewhere must not choose which local file vptune reads. Either way the file is read without unpickling.

    Raises:
        ArtifactError: The task records a local weights file and neither ``weights`` nor the opt-in was given.
    """
    bb = task.backbone
    name = model_name or bb["name"]
    if weights is None and pretrained is None:
        recorded = bb.get("weights")
        if recorded and not trust_task_weights:
            raise ArtifactError(
                f"task '{task.path}' was trained on the local weights file '{recorded}' (task.json field "
                f"'backbone.weights'); vptune does not open a path taken from a task file: pass the file yourself "
                f"(--weights FILE) or opt in with --trust-task-weights (trust_task_weights=True)"
            )
        weights, pretrained = recorded, bb.get("pretrained", True)
    vit = create_vit(name, pretrained=bool(pretrained), weights=weights, img_size=bb.get("img_size"))
    return vit, weights_hash(vit)


def check_backbone(task: TaskArtifact, name: str, digest: str) -> None:
    """Explain any difference between the task's recorded backbone and the one at hand."""
    bb = task.backbone
    if name != bb["name"] or digest != bb["hash"]:
        raise ArtifactError(
            f"task '{task.path}' was trained on backbone '{bb['name']}' with weights hash {bb['hash']}, but the "
            f"backbone at hand is '{name}' with hash {digest}. Load the same weights (--model {bb['name']} and "
            f"--weights FILE or the same pretrained tag) or retrain the task on this backbone."
        )


def attach_task(task: TaskArtifact, vit: torch.nn.Module, digest: str) -> AdaptedModel:
    """Build the task's model on an already-loaded backbone (hash checked) and load its tensors."""
    name = task.backbone["name"]
    check_backbone(task, name, digest)
    info = describe(name, vit)
    try:
        method = build_method(task.method, info)
    except (VptuneError, ValueError) as err:
        raise ArtifactError(f"'{task.path / META_FILE}': field 'method': {err}") from None
    kind = task.meta.get("task") or {}
    try:
        model = AdaptedModel(
            vit,
            info,
            method,
            len(task.classes),
            backbone_hash=digest,
            task=kind.get("type", "classification"),
            decoder=kind.get("decoder"),
        )
    except VptuneError as err:
        raise ArtifactError(f"'{task.path / META_FILE}': field 'task': {err}") from None
    tensor_path = task.path / TENSOR_FILE
    recorded = (task.meta.get("tensors") or {}).get("sha256")
    if recorded:
        try:
            actual = file_sha256(tensor_path)
        except OSError as err:
            raise ArtifactError(f"'{tensor_path}' cannot be read ({err.strerror or err})") from None
        if actual != recorded:
            raise ArtifactError(
                f"'{tensor_path}' has sha256 {actual[:12]}..., task.json field 'tensors.sha256' records "
                f"{recorded[:12]}...: the folder mixes two saves (interrupted write?); save or copy the task again"
            )
    expected = set(model.trainable_state_dict())
    tensors = check_tensors(tensor_path, model.trainable_state_dict(), task.meta)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    frozen = set(model.state_dict()) - expected
    frozen -= {k for k in frozen if k.endswith("num_batches_tracked")}  # BatchNorm never reports these missing
    if set(missing) != frozen or unexpected:  # exactly the frozen keys may be absent
        raise ArtifactError(f"'{task.path}': tensors did not load cleanly (unexpected {unexpected[:5]})")
    return model.eval()


def load_task(
    path: str | Path,
    *,
    model_name: str | None = None,
    weights: str | None = None,
    pretrained: bool | None = None,
    device: str | torch.device = "cpu",
    trust_task_weights: bool = False,
) -> tuple[AdaptedModel, TaskArtifact]:
    """Load a task folder as a ready-to-run model in eval mode.

    Args:
        path: The task folder (``task.json`` + ``task.safetensors``).
        model_name: Override the backbone name recorded in the task.
        weights: Load the backbone from this local file instead of the recorded source.
        pretrained: Override whether timm's pretrained weights are loaded.
        device: Where to put the model.
        trust_task_weights: Open the backbone weights file that ``task.json`` records (off: pass ``weights``).
    """
    task = read_task(path)
    vit, digest = load_backbone_for(
        task, model_name=model_name, weights=weights, pretrained=pretrained, trust_task_weights=trust_task_weights
    )
    if model_name and model_name != task.backbone["name"]:
        check_backbone(task, model_name, digest)
    return attach_task(task, vit, digest).to(device), task
