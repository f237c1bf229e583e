"""Typed run configuration: YAML files, CLI flags and dotted ``--set key=value`` overrides, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .methods import MethodConfig, parse_method_config
from .methods.base import format_validation_error


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field(
        "vit_base_patch16_224.orig_in21k",
        description="timm model name, e.g. vit_base_patch16_224.orig_in21k, or vptune_micro_vit (bundled)",
    )
    pretrained: bool = Field(True, description="load timm's pretrained weights (false: random init, for tests)")
    weights: str | None = Field(None, description="local .safetensors/.pth/.npz weights file (overrides pretrained)")
    img_size: int | None = Field(None, ge=8, le=4096, description="input resolution (default: the model's)")


class DataConfig(_Section):
    spec: str = Field("", description="data source: folder:PATH, csv:FILE, offline:NAME, vtab1k:ROOT/TASK, ...")
    normalize: Literal["model", "imagenet"] = Field(
        "model", description="mean/std from the model's timm data config, or ImageNet's (the paper's setting)"
    )
    augment: Literal["none", "flip-crop"] = Field(
        "none", description="none: plain resize (VTAB); flip-crop: resize+random crop+flip (FGVC)"
    )
    interpolation: Literal["model", "bilinear", "bicubic"] = Field(
        "model", description="resize filter: the model's timm data config, or bilinear (VTAB's TF pipeline)"
    )
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of train held out when no val split exists")
    train_split: str = Field("train", description="split to train on (e.g. train800val200 for VTAB-1k)")
    val_split: str | None = Field("val", description="split scored each epoch (none: no validation)")
    test_split: str | None = Field("test", description="split scored once at the end (none: skip)")
    skip_bad_images: bool = Field(False, description="skip and count unreadable images instead of stopping")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description="seeded subset of the train split (low-data runs)")


class OptimConfig(_Section):
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (with momentum) or adamw")
    lr: float = Field(0.1, gt=0.0, description="learning rate (base lr when scale_lr is true)")
    scale_lr: bool = Field(True, description="use lr * batch_size / 256 (the paper's rule, every optimiser)")
    weight_decay: float = Field(1e-4, ge=0.0, description="weight decay (not applied to biases and 1-d parameters)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    warmup_epochs: float = Field(1.0, ge=0.0, description="linear warmup, then cosine decay to 0, per iteration")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing")


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1, le=100000, description="passes over the train split")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps (overrides epochs)")
    batch_size: int = Field(
        32, ge=1, le=65536, description="images per batch, all ranks together (x grad_accum per step)"
    )
    grad_accum: int = Field(1, ge=1, le=1024, description="micro-batches per optimiser step")
    val_every: int = Field(1, ge=0, description="validate every N epochs (0: only at the end)")
    seed: int = Field(0, ge=0, description="seeds init, data order and augmentation")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    amp: Literal["auto", "bf16", "fp16", "off"] = Field("auto", description="auto: bf16/fp16 on CUDA, fp32 elsewhere")
    grad_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    progress: bool = Field(True, description="show progress bars")
    compile: bool = Field(False, description="torch.compile the model forward (falls back to eager if it fails)")
    feature_cache: bool = Field(
        True,
        description="compute frozen features once and reuse them across epochs, for methods whose trainable part "
        "starts late (linear, ...) when data.augment is none",
    )
    flush_denormal: bool = Field(
        True,
        description="flush subnormal floats to zero on CPU while training: unstable high-lr runs otherwise slow down "
        "up to ~4x (benchmarks/denormals.py)",
    )
    feature_cache_max_gb: float = Field(4.0, ge=0.0, description="skip the feature cache when it would be larger")
    dist_backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="torchrun process-group backend; auto: nccl on CUDA, gloo on CPU"
    )
    dist_timeout_min: int = Field(30, ge=1, le=1440, description="collective timeout under torchrun, minutes")


class RunConfig(_Section):
    """Everything one ``vptune train`` needs; each field is settable from YAML, flags or ``--set``."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=lambda: parse_method_config({"name": "vpt-deep"}))
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: str = Field("runs/train", description="output folder: checkpoints, metrics, task artifact")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> MethodConfig:
        if isinstance(value, str):
            value = {"name": value}
        return parse_method_config(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (the method config keeps its own fields)."""
        data = self.model_dump(mode="json")
        data["method"] = self.method.model_dump(mode="json")
        return data


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key="a.b"``, creating sections as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ``("train.epochs", 5)``; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected key=value, e.g. --set train.epochs=5")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{p}' is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of sections (model:, data:, method:, ...)")
    return data


def build_config(
    yaml_path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """Merge defaults < YAML file < explicit flags (dotted keys) < ``--set`` overrides, then validate."""
    tree: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    if isinstance(tree.get("method"), str):
        tree["method"] = {"name": tree["method"]}
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(tree, key, value)
    for item in overrides or []:
        set_dotted(tree, *parse_override(item))
    if "method" in tree:  # validated first so that its errors name method fields directly
        tree["method"] = parse_method_config(tree["method"])
    try:
        return RunConfig(**tree)
    except ValidationError as err:
        where = f" in {yaml_path}" if yaml_path else ""
        raise ConfigError(f"invalid configuration{where}: {format_validation_error(err, '')}") from None
