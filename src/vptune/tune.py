"""``vptune tune``: the lr x weight-decay (x prompt length) search of the VPT paper, on Optuna.

Each trial is one :func:`vptune.engine.trainer.fit` on the train split (train800 for VTAB-1k) scored by val
top-1 at the last epoch (val200); the test split is never touched. The paper's protocol is a full grid
(:data:`PAPER_GRIDS`, Optuna's ``GridSampler``); successive-halving pruning on per-epoch val top-1 is optional.
The study lives in a database (SQLite in the output folder by default, any SQLAlchemy URL otherwise) under a
name derived from task and method, so several processes or machines running the same command share the work,
and re-running it resumes: finished grid points are never trained again, interrupted ones are retried (their
trial folder keeps a checkpoint, so the run resumes where it stopped).

The result is ``OUT/best.json`` (see :func:`write_best` and docs/performance.md for the format), which
``vptune bench`` and other tools read with :func:`load_best` / :func:`best_overrides`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .bench import search
from .bench.search import ADAMW_LRS, SGD_LRS, WDS
from .config import RunConfig
from .data import TaskData, load_data
from .engine.io import write_json
from .errors import ConfigError, VptuneError

BEST_FILE = "best.json"
WEIGHT_DECAYS = list(WDS)
PAPER_GRIDS: dict[str, dict[str, Any]] = {  # the same grids as `vptune bench` (vptune.bench.search)
    "sgd": {"lr": list(SGD_LRS), "weight_decay": WEIGHT_DECAYS},
    "adamw": {"lr": list(ADAMW_LRS), "weight_decay": WEIGHT_DECAYS},
}
SMALL_GRIDS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": [10.0, 1.0], "weight_decay": [0.001, 0.0]},
    "adamw": {"lr": [0.001, 1e-4], "weight_decay": [0.001, 0.0]},
}
PAPER_PROMPT_LENGTHS = list(search.PAPER_PROMPT_LENGTHS)
# settings a trial varies, or that do not change its result: left out of the study's settings check
VOLATILE = {("out",), ("train", "progress"), ("train", "device"), ("data", "num_workers")}


@dataclass
class TuneOptions:
    """How to search.

    Attributes:
        grid: ``paper`` (the paper's lr x wd grid for the optimiser) or ``small`` (2 x 2, for smoke runs).
        lrs: Learning rates to try instead of the grid's.
        weight_decays: Weight decays to try instead of the grid's.
        prompt_lengths: Prompt lengths to search too (methods with a ``prompt_length`` option).
        options: Any other method option to search, e.g. ``{"reduction": [8, 64, 256]}`` for the adapter.
        sampler: ``grid`` (every point once) or ``tpe`` (Optuna's TPE over the same values; needs ``trials``).
        prune: Stop weak trials early (successive halving on per-epoch val top-1).
        storage: Database URL; default ``sqlite:///OUT/study.db``.
        study_name: Default ``TASK-METHOD``.
        trials: At most this many new trials in this call (grid: default all remaining points).
        progress: Print one line per trial on stderr.
    """

    grid: Literal["paper", "small"] = "paper"
    lrs: list[float] | None = None
    weight_decays: list[float] | None = None
    prompt_lengths: list[int] | None = None
    options: dict[str, list[Any]] | None = None
    sampler: Literal["grid", "tpe"] = "grid"
    prune: bool = False
    storage: str | None = None
    study_name: str | None = None
    trials: int | None = None
    progress: bool = True


def search_space(cfg: RunConfig, opts: TuneOptions) -> dict[str, list[Any]]:
    """The values per searched setting: ``lr``, ``weight_decay`` and optionally ``prompt_length`` / method options."""
    grids = PAPER_GRIDS if opts.grid == "paper" else SMALL_GRIDS
    base = grids[cfg.optim.optimizer]
    space: dict[str, list[Any]] = {
        "lr": [float(v) for v in (opts.lrs or base["lr"])],
        "weight_decay": [float(v) for v in (opts.weight_decays or base["weight_decay"])],
    }
    if opts.prompt_lengths:
        if "prompt_length" not in type(cfg.method).model_fields:
            raise ConfigError(f"--prompt-lengths: method '{cfg.method.name}' has no prompt_length option")
        space["prompt_length"] = [int(p) for p in opts.prompt_lengths]
    for name, values in (opts.options or {}).items():
        if name in ("name", "lr", "weight_decay") or name not in type(cfg.method).model_fields:
            raise ConfigError(f"--search method.{name}: method '{cfg.method.name}' has no option '{name}'")
        space[name] = list(values)
    for name, values in space.items():
        if not values or len(set(values)) != len(values):
            raise ConfigError(f"tune: the values of {name} must be non-empty and distinct (got {values})")
    return space


def study_name_for(task: str, method: str) -> str:
    """``TASK-METHOD`` with characters databases and shells dislike replaced: the same on every machine."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}-{method}")


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def trial_config(cfg: RunConfig, params: dict[str, Any], out: Path, prune: bool) -> RunConfig:
    """The run of one grid point: searched values set, test split skipped, its own output folder."""
    data = cfg.to_dict()
    data["optim"].update(lr=params["lr"], weight_decay=params["weight_decay"])
    for name, value in params.items():
        if name not in ("lr", "weight_decay"):  # prompt_length and other searched method options
            data["method"][name] = value
    data["data"]["test_split"] = None  # the search never looks at test
    if prune:
        data["train"]["val_every"] = 1
    data["out"] = str(out / "trials" / trial_slug(params))
    return RunConfig(**data)


def trial_slug(params: dict[str, Any]) -> str:
    short = {"lr": "lr", "weight_decay": "wd", "prompt_length": "p"}
    return "_".join(f"{short.get(k, k)}{params[k]:g}" for k in sorted(params))


def settings_digest(cfg: RunConfig, space: dict[str, list[Any]]) -> tuple[str, dict[str, Any]]:
    """What every process joining a study must agree on: the fixed configuration and the search space."""
    data = cfg.to_dict()
    for path in VOLATILE:
        node = data
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    data["optim"].pop("lr", None)
    data["optim"].pop("weight_decay", None)
    for name in space:
        data["method"].pop(name, None)
    data["search_space"] = space
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16], data


def _import_optuna() -> Any:
    return search.import_optuna()


def open_study(cfg: RunConfig, opts: TuneOptions, task: str, out: Path, space: dict[str, list[Any]]) -> Any:
    """Create or join the study; refuse one that was started with other settings."""
    optuna = _import_optuna()
    url = opts.storage or default_storage(out)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    storage = search.open_storage(url, heartbeat_s=60, grace_s=600, retry=False) if "://" in url else url
    if opts.sampler == "grid":
        sampler = optuna.samplers.GridSampler(space, seed=cfg.train.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=cfg.train.seed)
    pruner = optuna.pruners.SuccessiveHalvingPruner() if opts.prune else optuna.pruners.NopPruner()
    name = opts.study_name or study_name_for(task, cfg.method.name)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="maximize", load_if_exists=True
    )
    digest, settings = settings_digest(cfg, space)
    known = study.user_attrs.get("vptune_settings")
    if known is None:
        study.set_user_attr("vptune_settings", digest)
        study.set_user_attr("vptune_config", settings)
    elif known != digest:
        raise ConfigError(
            f"study '{name}' in {url} was started with other settings (model, data, method, schedule or search "
            f"space differ); pass --study-name NEW or another --storage/--out to start a separate search"
        )
    return study


def _key(params: dict[str, Any], names: list[str]) -> tuple[Any, ...]:
    return tuple(params.get(n) for n in names)


def grid_points(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order the values are listed (axes by name; the engine's grid, shared with bench)."""
    return search.grid_points({n: space[n] for n in sorted(space)})


def plan_trials(study: Any, space: dict[str, list[Any]], opts: TuneOptions) -> int:
    """Re-queue grid points whose only trials failed (e.g. interrupted); return how many trials to start now.

    A grid point with a complete or pruned trial is never trained again; points that other processes are
    training right now are left to them.
    """
    optuna = _import_optuna()
    state = optuna.trial.TrialState
    optuna.storages.fail_stale_trials(study)  # trials of crashed processes (heartbeat lost) -> FAIL
    names = sorted(space)
    trials = study.get_trials(deepcopy=False)
    done = {_key(t.params, names) for t in trials if t.state in (state.COMPLETE, state.PRUNED)}
    if opts.sampler == "tpe":
        if opts.trials is None:
            raise ConfigError("--trials: the tpe sampler needs a trial budget, e.g. --trials 20")
        return max(0, opts.trials - len(done))
    running = sum(1 for t in trials if t.state == state.RUNNING)
    queued = {_key(t.system_attrs.get("fixed_params", {}), names) for t in trials if t.state == state.WAITING}
    queued |= {_key(t.params, names) for t in trials if t.state == state.RUNNING}
    failed = {_key(t.params, names) for t in trials if t.state == state.FAIL}
    not_done = [p for p in grid_points(space) if _key(p, names) not in done]
    for point in not_done:
        if _key(point, names) in failed - queued:
            study.enqueue_trial(point)
    remaining = max(0, len(not_done) - running)
    return remaining if opts.trials is None else min(opts.trials, remaining)


def make_objective(cfg: RunConfig, opts: TuneOptions, space: dict[str, list[Any]], data: TaskData, out: Path) -> Any:
    """The Optuna objective: train one grid point, report val top-1 each epoch, return it at the last."""
    optuna = _import_optuna()
    from .engine.trainer import fit

    def objective(trial: Any) -> float:
        params = {name: trial.suggest_categorical(name, values) for name, values in sorted(space.items())}
        run_cfg = trial_config(cfg, params, out, opts.prune)
        trial.set_user_attr("out", run_cfg.out)

        def report(epoch: int, record: dict[str, Any]) -> None:
            if "val" in record:
                trial.report(record["val"]["top1"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"val top1 {record['val']['top1']:.4f} after epoch {epoch + 1}")

        result = fit(run_cfg, data=data, on_epoch_end=report if opts.prune else None)
        value = result.metrics.get("val_top1")
        if value is None or not math.isfinite(value):
            raise VptuneError(f"trial {trial.number}: no val top-1 (is data.val_split '{cfg.data.val_split}' empty?)")
        if opts.progress:
            print(f"vptune tune: trial {trial.number} {trial_slug(params)}: val top1 {value:.4f}", file=sys.stderr)
        return float(value)

    return objective


def best_trial(study: Any, space: dict[str, list[Any]]) -> Any | None:
    """The complete trial with the highest val top-1; ties go to the cheaper, more regularised point (smaller
    lr, then larger weight decay, then shorter prompt: :func:`vptune.bench.plan.tie_key`, the bench's rule)."""
    from .bench.search import tie_key

    optuna = _import_optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None

    def point(t: Any) -> dict[str, Any]:
        p = dict(t.params)
        return {"lr": p.pop("lr"), "wd": p.pop("weight_decay"), **p}

    return min(complete, key=lambda t: (-t.value, tie_key(point(t), space), t.number))


def write_best(
    study: Any, cfg: RunConfig, space: dict[str, list[Any]], task: str, out: Path, storage: str
) -> dict[str, Any]:
    """Write ``OUT/best.json``: the best settings in a form other tools read (see docs/performance.md)."""
    optuna = _import_optuna()
    best = best_trial(study, space)
    if best is None:
        raise VptuneError(f"study '{study.study_name}' has no complete trial yet; run vptune tune again")
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    method = cfg.method.model_dump(mode="json")
    method.pop("name")
    for name, value in best.params.items():
        if name not in ("lr", "weight_decay"):
            method[name] = value
    optim = {
        "optimizer": cfg.optim.optimizer,
        "lr": best.params["lr"],
        "weight_decay": best.params["weight_decay"],
        "scale_lr": cfg.optim.scale_lr,
    }
    result = {
        "task": task,
        "method": cfg.method.name,
        "model": cfg.model.name,
        "optim": optim,
        "method_options": method,
        "val_top1": best.value,
        "trials": sum(1 for t in trials if t.state in (states.COMPLETE, states.PRUNED)),
        "overrides": best_overrides({"optim": optim, "method_options": method}),
        "data": {"spec": cfg.data.spec, "train_split": cfg.data.train_split, "val_split": cfg.data.val_split},
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "study": {"name": study.study_name, "storage": storage, "search_space": space},
        "best_trial": {"number": best.number, "out": best.user_attrs.get("out")},
        "all_trials": [
            {"number": t.number, "state": t.state.name, "params": t.params, "val_top1": t.value}
            for t in trials
            if t.state.is_finished()
        ],
    }
    write_json(out / BEST_FILE, result)
    return result


def best_overrides(best: dict[str, Any]) -> list[str]:
    """``--set`` style overrides (``optim.lr=...``) that apply a ``best.json`` to a training config."""
    items = [f"optim.{k}={json.dumps(v)}" for k, v in best["optim"].items()]
    items += [f"method.{k}={json.dumps(v)}" for k, v in best.get("method_options", {}).items()]
    return items


def load_best(path: str | Path) -> dict[str, Any]:
    """Read a ``best.json`` (or the ``best.json`` inside a tune output folder)."""
    p = Path(path)
    p = p / BEST_FILE if p.is_dir() else p
    try:
        best = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise VptuneError(f"cannot read tuned settings from '{p}': {err}") from None
    missing = [k for k in ("task", "method", "optim", "method_options", "val_top1") if k not in best]
    if missing:
        raise VptuneError(f"'{p}' is not a vptune best.json (missing {', '.join(missing)})")
    return best


def tune(cfg: RunConfig, out: str | Path, opts: TuneOptions, data: TaskData | None = None) -> dict[str, Any]:
    """Run (or resume, or join) the search and write ``OUT/best.json``; returns its content.

    Args:
        cfg: The training configuration every trial starts from (its lr / weight decay are searched).
        out: Output folder: ``study.db`` (default storage), ``trials/<point>/`` runs, ``best.json``.
        opts: Grid, sampler, pruning, storage and trial budget.
        data: Pre-loaded data (default: resolved from ``cfg.data.spec``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.data.val_split is None:
        raise ConfigError("data.val_split: tuning scores each trial on a validation split; set one (e.g. val200)")
    space = search_space(cfg, opts)
    data = data or load_data(cfg.data.spec, val_fraction=cfg.data.val_fraction, seed=cfg.train.seed)
    data.split(cfg.data.train_split)  # a missing split is reported before any trial runs
    data.split(cfg.data.val_split)
    study = open_study(cfg, opts, data.name, out, space)
    n = plan_trials(study, space, opts)
    total = math.prod(len(v) for v in space.values())
    if opts.progress:
        print(f"vptune tune: study '{study.study_name}', {total} grid points, {n} trials to run now", file=sys.stderr)
    if n:
        study.optimize(make_objective(cfg, opts, space, data, out), n_trials=n)
    return write_best(study, cfg, space, data.name, out, opts.storage or default_storage(out))
