"""The typed schema of ``task.json`` and the checks a task's tensors pass before they are loaded.

Every failure is one :class:`~vptune.errors.ArtifactError` naming the file and the field (or tensor), never a raw
``KeyError``/``ValueError``/``UnicodeDecodeError``/``RecursionError``. Sizes are bounded so that a hostile file
can not make the reader allocate without limit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError, safe_open

from ..errors import ArtifactError
from ..seg.config import TaskKindMeta

FORMAT = "vptune-task"
FORMAT_VERSION = 1
MAX_META_BYTES = 8 * 1024 * 1024  # task.json: class names and a run config, far below this
MAX_CLASSES = 100_000
MAX_NAME_CHARS = 1_000
MAX_TENSORS = 10_000

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
Positive = Annotated[int, Field(ge=1, le=1_000_000_000)]
Count = Annotated[int, Field(ge=0, le=100_000_000_000)]
Side = Annotated[int, Field(ge=1, le=16_384)]


class Preprocessing(BaseModel):
    """How images are turned into model inputs (recorded so that prediction matches training)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: list[Side] = Field(min_length=2, max_length=2, description="(height, width) fed to the model")
    mean: list[float] = Field(min_length=1, max_length=4, description="per-channel mean subtracted")
    std: list[float] = Field(min_length=1, max_length=4, description="per-channel std divided by (> 0)")
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    augment: Literal["none", "flip-crop"] = "none"

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, values: list[float], info: Any) -> list[float]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError("values must be finite numbers")
        if info.field_name == "std" and not all(v > 0 for v in values):
            raise ValueError("values must be > 0")
        return values


class BackboneMeta(BaseModel):
    """The backbone a task was trained on."""

    model_config = ConfigDict(extra="allow")

    name: Name
    hash: str = Field(pattern=r"^[0-9a-f]{16}$", description="weights_hash of the backbone")
    embed_dim: Positive | None = None
    depth: Positive | None = None
    pretrained: bool = True
    weights: Annotated[str, Field(max_length=4096)] | None = None
    img_size: Side | None = None


class MethodMeta(BaseModel):
    """The method's config (validated in full by the method's own config class when the task is built)."""

    model_config = ConfigDict(extra="allow")

    name: Name


class ParamCounts(BaseModel):
    model_config = ConfigDict(extra="allow")

    trainable_params: Count
    backbone_params: Count
    trainable_percent: float = Field(ge=0)
    head_params: Count | None = None
    method_params: Count | None = None


class TensorsMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: Literal["task.safetensors"] = "task.safetensors"
    count: Annotated[int, Field(ge=0, le=MAX_TENSORS)]
    numel: Count
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="of task.safetensors (since 0.1.1)")


class TaskMeta(BaseModel):
    """``task.json``: what a task is (its trained tensors live in ``task.safetensors``)."""

    model_config = ConfigDict(extra="allow")

    format: Literal["vptune-task"]
    format_version: Annotated[int, Field(ge=1, le=FORMAT_VERSION)]
    vptune_version: Annotated[str, Field(max_length=100)] | None = None
    created: Annotated[str, Field(max_length=100)] | None = None
    method: MethodMeta
    output: Annotated[str, Field(max_length=100)] | None = None
    backbone: BackboneMeta
    classes: list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] = Field(min_length=1, max_length=MAX_CLASSES)
    params: ParamCounts
    tensors: TensorsMeta | None = None
    preprocessing: Preprocessing
    metrics: dict[str, Any] = Field(default_factory=dict)
    train_config: dict[str, Any] = Field(default_factory=dict)
    task: TaskKindMeta | None = None  # absent: classification (segmentation: vptune.seg)

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = [c for c in classes if c in seen or seen.add(c)]
        if dupes:
            raise ValueError(f"class names must be unique; repeated: {dupes[:5]}")
        return classes


def _field(err: ValidationError) -> str:
    """The first problem as ``field 'a.b': message``."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    return f"field '{loc}': {first.get('msg')}" + (f" ({len(err.errors()) - 1} more)" if len(err.errors()) > 1 else "")


def parse_meta(meta_path: Path) -> dict[str, Any]:
    """Read and validate ``task.json``; returns the plain dict (validated, unknown extra fields kept).

    Raises:
        ArtifactError: Too large, not UTF-8, not JSON, too deeply nested, or not matching the schema.
    """
    try:
        size = meta_path.stat().st_size
        if size > MAX_META_BYTES:
            raise ArtifactError(f"'{meta_path}' is {size} bytes, over the {MAX_META_BYTES} limit for a task file")
        text = meta_path.read_bytes().decode("utf-8")
        raw = json.loads(text)
    except UnicodeDecodeError as err:
        raise ArtifactError(f"'{meta_path}' is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise ArtifactError(f"'{meta_path}' is not valid JSON: {err}") from None
    except RecursionError:
        raise ArtifactError(f"'{meta_path}' is nested too deeply to be a task file") from None
    except OSError as err:
        raise ArtifactError(f"'{meta_path}' cannot be read ({err.strerror or err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"'{meta_path}' is not a vptune task file (format field missing or wrong)")
    version = raw.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ArtifactError(
            f"'{meta_path}' has format version {version}; this vptune reads up to {FORMAT_VERSION}: upgrade vptune"
        )
    try:
        TaskMeta.model_validate(raw)
    except ValidationError as err:
        raise ArtifactError(f"'{meta_path}': {_field(err)}; the file is damaged or was edited by hand") from None
    except RecursionError:
        raise ArtifactError(f"'{meta_path}' is nested too deeply to be a task file") from None
    return raw


def check_tensors(
    tensor_path: Path, expected: dict[str, torch.Tensor], meta: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Read the task's tensors after checking names, shapes and dtypes from the header, then finiteness.

    Args:
        tensor_path: ``task.safetensors``.
        expected: The model's own tensors by name (shape and dtype to match).
        meta: The validated ``task.json`` (its ``tensors`` record is compared when present).

    Raises:
        ArtifactError: Unreadable file, other names, shapes or dtypes, NaN/inf values, or a count that disagrees
            with ``task.json`` (the message names the tensor).
    """
    try:
        with safe_open(str(tensor_path), framework="pt") as f:
            names = set(f.keys())
            if names != set(expected):
                extra, lacking = sorted(names - set(expected)), sorted(set(expected) - names)
                raise ArtifactError(
                    f"'{tensor_path}' does not match method '{meta['method']['name']}': unexpected tensors "
                    f"{extra[:5]}, missing tensors {lacking[:5]}"
                )
            out = {}
            for name in sorted(names):
                piece, want = f.get_slice(name), expected[name]
                shape, dtype = list(piece.get_shape()), str(piece.get_dtype())
                if shape != list(want.shape) or _DTYPES.get(dtype) != want.dtype:
                    raise ArtifactError(
                        f"'{tensor_path}': tensor '{name}' is {dtype}{shape}, the task's method needs "
                        f"{_name(want.dtype)}{list(want.shape)}; the file does not belong to this task.json"
                    )
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise ArtifactError(f"'{tensor_path}': tensor '{name}' holds NaN or infinite values")
                out[name] = tensor
    except SafetensorError as err:
        raise ArtifactError(f"'{tensor_path}' cannot be read ({err}); the file is damaged") from None
    except OSError as err:
        raise ArtifactError(f"'{tensor_path}' cannot be read ({err.strerror or err})") from None
    record = meta.get("tensors")
    if record and record.get("count") != len(out):
        raise ArtifactError(
            f"'{tensor_path}' holds {len(out)} tensors, task.json field 'tensors.count' says "
            f"{record.get('count')}; the folder mixes two saves"
        )
    return out


_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _name(dtype: torch.dtype) -> str:
    return next((k for k, v in _DTYPES.items() if v == dtype), str(dtype))
