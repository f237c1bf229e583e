"""Typed run configuration: YAML files, CLI flags and dotted ``--set key=value`` overrides, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config_keys import check_keys
from .errors import ConfigError
from .methods import MethodConfig, get_method, parse_method_config
from .methods.base import format_validation_error
from .run_folder import default_out
from .seg.config import SegConfig
from .unset import UNSET

DEFAULT_METHOD = "vpt-deep"
# Base lr / weight decay when the user picks an optimiser other than the method's default (docs/default-optim.md)
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.5, "weight_decay": 0.0},
    "adamw": {"lr": 4e-3, "weight_decay": 0.05},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    name: str = Field(
        "vit_base_patch16_224.orig_in21k",
        description="timm model name: a ViT (vit_base_patch16_224.orig_in21k, *.mae), Swin (swin_*), ResNet or "
        "ConvNeXt, or vptune_micro_vit (bundled); see docs/backbones.md",
    )
    pretrained: bool = Field(True, description="load timm's pretrained weights (false: random init, for tests)")
    weights: str | None = Field(
        None, description="local .safetensors/.pth/.npz weights file, or a MoCo-v3 .pth.tar (overrides pretrained)"
    )
    img_size: int | None = Field(None, ge=8, le=4096, description="input resolution (default: the model's)")


class DataConfig(_Section):
    spec: str = Field(
        "",
        description="data source: folder:PATH, csv:FILE, offline:NAME, vtab1k:ROOT/TASK, segfolder:ROOT, "
        "ade20k:ROOT, ...",
    )
    task: Literal["auto", "classification", "segmentation"] = Field(
        "auto", description="auto: what the data source holds (segfolder:, ade20k:, offline:shapes_seg segment)"
    )
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
    """Optimiser settings. ``optimizer``, ``lr`` and ``weight_decay`` left unset come from the method's
    ``default_optim`` (``vptune methods`` lists them); the field defaults below apply to direct construction."""

    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (with momentum) or adamw")
    lr: float = Field(
        1.0, gt=0.0, description="base learning rate: the step size is lr x batch/256 unless optim.scale_lr is false"
    )
    scale_lr: bool = Field(
        True, description="step size = lr x batch_size / 256, for SGD and AdamW alike (the official VPT code's rule)"
    )
    weight_decay: float = Field(0.0, ge=0.0, description="weight decay (not applied to biases and 1-d parameters)")
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
    method: MethodConfig = Field(default_factory=lambda: parse_method_config({"name": DEFAULT_METHOD}))
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    seg: SegConfig = Field(default_factory=SegConfig)
    out: str = Field(
        "runs/train", description="output folder: checkpoints, metrics, task artifact (build_config: runs/DATA-METHOD)"
    )

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


def method_optim_defaults(method: str, optimizer: str | None = None) -> dict[str, Any]:
    """Optim keys for ``method`` when the user sets none: its ``default_optim``, or, when the user picked another
    ``optimizer``, that optimiser's generic lr / weight decay (:data:`OPTIMIZER_DEFAULTS`)."""
    defaults = dict(get_method(method).default_optim)
    if optimizer is not None and optimizer != defaults.get("optimizer"):
        return dict(OPTIMIZER_DEFAULTS.get(optimizer, {}))
    return defaults


def _fill_optim(tree: dict[str, Any]) -> None:
    """Fill the optim keys the user left unset from the method's defaults (before validation)."""
    method = tree.get("method")
    name = method.name if isinstance(method, MethodConfig) else DEFAULT_METHOD
    optim = tree.setdefault("optim", {})
    if isinstance(optim, dict):  # anything else is reported by validation
        for key, value in method_optim_defaults(name, optim.get("optimizer")).items():
            optim.setdefault(key, value)


def build_config(
    yaml_path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """Merge defaults < YAML file < explicit flags (dotted keys) < ``--set`` overrides, then validate.

    Flags whose value is :data:`UNSET` are skipped; ``None`` is a value (e.g. ``data.val_split: None``). Optim
    keys left unset everywhere come from the method's ``default_optim`` (:func:`method_optim_defaults`); an
    unset ``out`` is ``runs/DATA-METHOD`` (:func:`vptune.run_folder.default_out`).
    """
    tree: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    if isinstance(tree.get("method"), str):
        tree["method"] = {"name": tree["method"]}
    for key, value in (flags or {}).items():
        if value is not UNSET:
            set_dotted(tree, key, value)
    for item in overrides or []:
        set_dotted(tree, *parse_override(item))
    if isinstance(tree.get("method"), dict):  # --set method.prompt_length=5 alone: options of the default method
        tree["method"].setdefault("name", DEFAULT_METHOD)
    check_keys(tree)
    if "method" in tree:  # validated first so that its errors name method fields directly
        tree["method"] = parse_method_config(tree["method"])
    _fill_optim(tree)
    spec = (tree.get("data") or {}).get("spec") if isinstance(tree.get("data"), dict) else None
    if "out" not in tree and spec:
        method = tree.get("method")
        tree["out"] = default_out(spec, method.name if isinstance(method, MethodConfig) else DEFAULT_METHOD)
    try:
        return RunConfig(**tree)
    except ValidationError as err:
        where = f" in {yaml_path}" if yaml_path else ""
        raise ConfigError(f"invalid configuration{where}: {format_validation_error(err, '')}") from None
