"""Benchmark suites: a YAML file of tasks x methods (with options and grids) x seeds, and the protocol.

A suite is validated with pydantic. Shipped suites live in ``vptune/bench/suites/*.yaml`` and are loaded by
name (``vtab1k``, ``fgvc``, ``offline``, ``offline-quick``, ``offline-prompt-length``, ``offline-low-data``,
``offline-backbones``, ...); any other argument is read as a YAML path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import set_dotted
from ..errors import ConfigError
from ..methods import parse_method_config
from ..methods.base import format_validation_error
from .family_grids import family_lrs

Benchmark = Literal["vtab1k", "fgvc", "offline", "custom"]
Protocol = Literal["paper", "best-val-epoch"]

# The paper's grids (vpt-method.md section 7) live in the selection engine shared with `vptune tune`.
from .search import ADAMW_LRS, SGD_LRS, WDS  # noqa: E402  (re-exported: suite.SGD_LRS etc.)

# Methods that train backbone weights or modules inside it use AdamW in the paper; prompts and heads use SGD.
ADAMW_METHODS: frozenset[str] = frozenset({"full", "partial", "bias", "adapter", "lora"})

MISSING_ROOT = "<data-root>"  # placeholder in dry-run plans of vtab1k / fgvc suites without --data-root
PROTOCOLS: dict[str, str] = {
    "paper": "lr, wd (and any searched method option, e.g. the prompt length) chosen by val top-1 at the last epoch "
    "after training on the selection split (ties: smaller lr, larger wd, shorter prompt); final runs "
    "train on the final split with every seed; test top-1 at the last epoch, evaluated once at the end of each run",
    "best-val-epoch": "lr, wd and the number of epochs chosen by the best val top-1 over the epochs of the "
    "selection runs; final runs train on the final split for that many epochs with every seed; test top-1 at "
    "their last epoch, evaluated once at the end of each run",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grid(_Model):
    """Learning rates (base lr when ``scale_lr``) x weight decays (x method options) searched on the selection split.

    ``method`` adds method options as axes, e.g. ``{prompt_length: [1, 5, 10, 50, 100, 200]}`` (the paper's p
    search) or ``{reduction: [8, 64, 256]}`` (the adapter's r).
    """

    lr: list[float] = Field(min_length=1)
    wd: list[float] = Field(min_length=1)
    method: dict[str, list[Any]] = Field(default_factory=dict, description="method option -> values searched")

    @model_validator(mode="after")
    def _distinct(self) -> Grid:
        for name, values in {"lr": self.lr, "wd": self.wd, **self.method}.items():
            if not values or len(set(map(str, values))) != len(values):
                raise ValueError(f"grid.{name}: the values must be non-empty and distinct (got {values})")
        return self


class Splits(_Model):
    """Which data split each protocol phase uses."""

    select_train: str
    select_val: str
    final_train: str
    test: str


DEFAULT_SPLITS: dict[str, Splits] = {
    "vtab1k": Splits(select_train="train800", select_val="val200", final_train="train800val200", test="test"),
    "offline": Splits(select_train="train800", select_val="val200", final_train="train800val200", test="test"),
    # FGVC: the official code trains the final runs on train (the 90% split) only; VTAB-1k retrains on 1000
    "fgvc": Splits(select_train="train", select_val="val", final_train="train", test="test"),
    "custom": Splits(select_train="train", select_val="val", final_train="train", test="test"),
}


class MethodSpec(_Model):
    """One method of a suite: a report label, the method options and the optimiser."""

    name: str = Field(min_length=1, description="label in results and reports, e.g. vpt-deep or vpt-deep-p50")
    method: dict[str, Any] = Field(default_factory=dict, description="method options; name defaults to the label")
    optimizer: Literal["sgd", "adamw"] | None = Field(None, description="default: adamw for full/partial/bias/...")
    grid: Grid | None = Field(None, description="default: the paper's grid for the optimiser")
    scale_lr: bool | None = Field(
        None,
        description="lr = base lr x batch / 256; default: the run config's optim.scale_lr (true, the paper's rule)",
    )
    batch_size: int | None = Field(None, ge=1, description="default: the suite's batch_size")
    paper_name: str | None = Field(None, description="method name in the paper's table (default: label, - -> _)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted run-config keys for this method")

    @model_validator(mode="after")
    def _fill(self) -> MethodSpec:
        # the paper's head init in every suite, whatever a method's CLI default (bias and adapter start small there)
        self.method = {"name": self.name, "head_init": "official", **self.method}
        parse_method_config(self.method)  # fail early, naming the option
        if self.optimizer is None:
            self.optimizer = "adamw" if self.method["name"] in ADAMW_METHODS else "sgd"
        if self.grid is None:
            self.grid = Grid(lr=list(SGD_LRS if self.optimizer == "sgd" else ADAMW_LRS), wd=list(WDS))
        for option, values in self.grid.method.items():
            for value in values:  # every searched value must be valid for the method, named in the error
                try:
                    parse_method_config({**self.method, option: value})
                except (ConfigError, ValidationError) as err:
                    raise ValueError(f"method {self.name}: grid.method.{option} value {value!r}: {err}") from None
        return self

    @property
    def paper_label(self) -> str:
        return self.paper_name or self.name.replace("-", "_")


class TaskSpec(_Model):
    """A task: a catalogue name (spec derived from the benchmark) or an explicit data spec."""

    name: str
    spec: str | None = None
    group: str | None = None
    num_classes: int | None = None


class Suite(_Model):
    """A benchmark suite (see docs/benchmarks.md for every field)."""

    name: str
    benchmark: Benchmark
    description: str = ""
    tuned_from: str | None = Field(
        None, description="set by bench --from-best: which methods run at tune's settings (said in the protocol)"
    )
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "vit_base_patch16_224.orig_in21k"})
    data_root: str | None = Field(None, description="ROOT of vtab1k:ROOT/TASK or fgvc:ROOT/NAME")
    data: dict[str, Any] = Field(default_factory=dict, description="data.* options for every run (normalize, ...)")
    tasks: list[TaskSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    selection_seed: int = 0
    protocol: Protocol = "paper"
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    warmup_epochs: float = Field(10.0, ge=0.0)
    val_every: int = Field(1, ge=0, description="validate every N epochs in selection runs (the curve)")
    train_fractions: list[float] = Field(default_factory=lambda: [1.0], description="low-data final runs")
    prompt_batch: dict[int, int] = Field(
        default_factory=dict,
        description="prompt-length threshold -> batch size, e.g. {100: 64}: batch 64 when p >= 100 (the paper)",
    )
    splits: Splits | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted run-config keys for every run")

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks(cls, value: Any) -> Any:
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @field_validator("train_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 < f <= 1.0 for f in value):
            raise ValueError("each train fraction must be in (0, 1]")
        return sorted(set(value))

    @model_validator(mode="after")
    def _check(self) -> Suite:
        labels = [m.name for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method labels must be unique, got {labels}")
        if self.splits is None:
            self.splits = DEFAULT_SPLITS[self.benchmark]
        for m in self.methods:  # official per-family lr grids where the method kept the default grid
            lrs = family_lrs(str(self.model.get("name", "")), m.method["name"])
            if lrs is not None and m.grid is not None and m.grid.lr == list(SGD_LRS):
                m.grid = Grid(lr=list(lrs), wd=m.grid.wd)
        return self

    def protocol_text(self) -> str:
        """The protocol in words, naming the splits."""
        s = self.splits
        assert s is not None
        splits = f"selection {s.select_train} -> {s.select_val}; final {s.final_train} -> {s.test}"
        tuned = f"; {self.tuned_from}" if self.tuned_from else ""
        return f"{self.protocol}: {PROTOCOLS[self.protocol]} ({splits}){tuned}"


@dataclass(frozen=True)
class TaskInfo:
    """A resolved task: data spec, group and class count (None when unknown before loading)."""

    name: str
    spec: str
    group: str
    num_classes: int | None


def resolve_task(suite: Suite, task: TaskSpec) -> TaskInfo:
    """Look a task up in the benchmark's catalogue and build its data spec."""
    from ..data.fgvc import find_fgvc_dataset
    from ..data.vtab import find_vtab_task

    if suite.benchmark == "offline":
        from ..data.offline import get_offline_task

        try:
            t = get_offline_task(task.name)
        except ValueError as err:
            raise ConfigError(f"suite {suite.name}: {err}") from None
        return TaskInfo(t.name, task.spec or f"offline:{t.name}", task.group or t.group, t.num_classes)
    if suite.benchmark in ("vtab1k", "fgvc"):
        entry = find_vtab_task(task.name) if suite.benchmark == "vtab1k" else find_fgvc_dataset(task.name)
        if entry is None and task.spec is None:
            raise ConfigError(f"suite {suite.name}: '{task.name}' is not a {suite.benchmark} task")
        name = entry.name if entry else task.name
        root = Path(suite.data_root).expanduser() if suite.data_root else MISSING_ROOT  # checked before training
        spec = task.spec or f"{suite.benchmark}:{root}/{name}"
        group = task.group or getattr(entry, "group", "fgvc")
        return TaskInfo(name, spec, group, task.num_classes or getattr(entry, "num_classes", None))
    if task.spec is None:
        raise ConfigError(f"suite {suite.name}: custom task '{task.name}' needs a spec (e.g. folder:PATH)")
    return TaskInfo(task.name, task.spec, task.group or "custom", task.num_classes)


def shipped_suites() -> list[str]:
    """Names of the suites shipped with vptune."""
    folder = resources.files("vptune.bench") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str | Path, overrides: list[str] | None = None, **fields: Any) -> Suite:
    """Load a shipped suite by name or a YAML file, apply dotted ``key=value`` overrides and fields, validate."""
    from ..config import parse_override

    tree, where = _read_tree(str(name_or_path), [])
    for item in overrides or []:
        set_dotted(tree, *parse_override(item))
    tree.update({k: v for k, v in fields.items() if v is not None})
    try:
        return Suite(**tree)
    except ValidationError as err:
        raise ConfigError(f"invalid suite ({where}): {format_validation_error(err, '')}") from None
    except ConfigError as err:
        raise ConfigError(f"invalid suite ({where}): {err}") from None


def _read_tree(text: str, seen: list[str]) -> tuple[dict[str, Any], str]:
    """The YAML mapping of a shipped suite or file; ``extends: BASE`` starts from BASE's top-level fields."""
    if text in shipped_suites():
        raw = (resources.files("vptune.bench") / "suites" / f"{text}.yaml").read_text()
        where = f"shipped suite '{text}'"
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"suite '{text}' is neither a shipped suite ({', '.join(shipped_suites())}) nor a file")
        raw, where = path.read_text(), str(path)
    try:
        tree = yaml.safe_load(raw) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{where} must be a mapping (name:, benchmark:, tasks:, methods:, ...)")
    base = tree.pop("extends", None)
    if base is not None:
        if str(base) in seen:
            raise ConfigError(f"{where}: extends: '{base}' forms a cycle ({' -> '.join([*seen, str(base)])})")
        parent, _ = _read_tree(str(base), [*seen, text])
        tree = {**parent, **tree}  # the child's top-level fields replace the parent's
    return tree, where
