"""``vptune bench``: run a suite's plan with :func:`vptune.engine.trainer.fit`, one result JSON per run.

Order per task and method: every selection run (grid point) first, then the selection (validation accuracy
only), then the final runs. Runs whose ``result.json`` exists are skipped, so an interrupted suite resumes;
a run interrupted mid-training resumes from its checkpoint. Runs are claimed from a queue on Optuna's storage
(:mod:`vptune.bench.workers`): in memory for one process, or a shared database for many workers.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import TaskData, load_data
from ..engine.io import write_json
from ..errors import ConfigError
from .plan import RESULT_FILE, RunSpec, final_runs, read_result, run_config, select, selection_runs
from .provenance import device_info, git_state, peak_memory, reset_peak_memory, versions
from .suite import MISSING_ROOT, MethodSpec, Suite, TaskInfo, resolve_task
from .workers import WorkerOptions, work

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pick(suite: Suite, tasks: list[str] | None, methods: list[str] | None) -> tuple[list[TaskInfo], list[MethodSpec]]:
    """The suite's tasks and methods, optionally narrowed to the given names (unknown names are errors)."""
    infos = [resolve_task(suite, t) for t in suite.tasks]
    for kind, wanted, have in (
        ("--tasks", tasks, [t.name for t in infos]),
        ("--methods", methods, [m.name for m in suite.methods]),
    ):
        unknown = sorted(set(wanted or []) - set(have))
        if unknown:
            raise ConfigError(f"{kind}: {', '.join(unknown)} not in suite {suite.name} ({', '.join(have)})")
    infos = [t for t in infos if not tasks or t.name in tasks]
    return infos, [m for m in suite.methods if not methods or m.name in methods]


def chosen_point(suite: Suite, task: TaskInfo, method: MethodSpec, out: Path) -> dict[str, Any] | None:
    """The selected grid point once every selection run is finished, else None."""
    results = [read_result(r.folder(out)) for r in selection_runs(suite, task, method)]
    if any(r is None for r in results):
        return None
    return select([r for r in results if r is not None], suite.protocol)


def build_plan(suite: Suite, out: str | Path, tasks: list[str] | None = None, methods: list[str] | None = None) -> dict:
    """The plan as JSON-ready data: tasks (with class counts), methods, every run and what is done already."""
    out = Path(out)
    infos, specs = pick(suite, tasks, methods)
    runs: list[dict[str, Any]] = []
    for task in infos:
        for method in specs:
            runs += [r.to_dict(out) for r in selection_runs(suite, task, method)]
            runs += [r.to_dict(out) for r in final_runs(suite, task, method, chosen_point(suite, task, method, out))]
    counts = {phase: sum(r["phase"] == phase for r in runs) for phase in dict.fromkeys(r["phase"] for r in runs)}
    return {
        "suite": suite.name,
        "benchmark": suite.benchmark,
        "protocol": suite.protocol,
        "protocol_description": suite.protocol_text(),
        "model": suite.model,
        "out": str(out),
        "tasks": [{"name": t.name, "group": t.group, "num_classes": t.num_classes, "spec": t.spec} for t in infos],
        "methods": [m.model_dump(mode="json") for m in specs],
        "counts": {**counts, "total": len(runs), "done": sum(r["done"] for r in runs)},
        "runs": runs,
    }


def execute(
    suite: Suite,
    task: TaskInfo,
    method: MethodSpec,
    run: RunSpec,
    out: Path,
    data: TaskData,
    progress: bool,
    **extra: Any,
) -> dict[str, Any]:
    """Train one run with ``fit`` and write its result JSON (returned)."""
    from ..engine.device import resolve_device
    from ..engine.trainer import fit
    from ..tasks import read_task

    cfg = run_config(suite, task, method, run, out, progress)
    device = resolve_device(cfg.train.device)
    reset_peak_memory(device)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    result = fit(cfg, data=data)
    wall = time.perf_counter() - t0
    folder = run.folder(out)
    record = {
        "schema": "vptune-bench-result/1",
        "suite": suite.name,
        "benchmark": suite.benchmark,
        "protocol": suite.protocol,
        "protocol_description": suite.protocol_text(),
        "task": task.name,
        "group": task.group,
        "num_classes": data.num_classes,
        "method": method.name,
        "paper_method": method.paper_label,
        "method_config": cfg.method.model_dump(mode="json"),
        "backbone": cfg.model.name,
        "phase": run.phase,
        "lr": run.lr,
        "wd": run.wd,
        "grid_options": dict(run.options),
        "batch_size": cfg.train.batch_size,
        "seed": run.seed,
        "train_fraction": run.train_fraction,
        "splits": {"train": run.train_split, "val": run.val_split, "test": run.test_split},
        "dir": str(folder),
        "config": cfg.to_dict(),
        "provenance": {**git_state(), **versions(), **device_info(device)},
        "timings": {
            "started": started.isoformat(timespec="seconds"),
            "wall_seconds": wall,
            "train_seconds": result.metrics.get("train_seconds"),
        },
        **peak_memory(device),
        "params": {
            k: result.summary.get(k)
            for k in ("trainable_params", "head_params", "method_params", "backbone_params", "trainable_percent")
        },
        "artifact_bytes": read_task(folder).summary()["artifact_bytes"],
        "val_curve": _curve(result.history, "val"),
        "train_curve": _curve(result.history, "train"),
        "metrics": result.metrics,
        **extra,
    }
    write_json(folder / RESULT_FILE, record)
    return record


def _curve(history: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [{"epoch": h["epoch"], "top1": h[key]["top1"], "loss": h[key]["loss"]} for h in history if key in h]


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
    progress: bool = False,
    log: Log = _stderr,
    workers: WorkerOptions | None = None,
) -> dict[str, Any]:
    """Run (or resume, or join) the whole plan; returns counts of runs this process trained and skipped.

    With ``workers.storage`` set, any number of processes on any number of machines share the suite through
    that database, each run claimed by exactly one of them (:mod:`vptune.bench.workers`).
    """
    out = Path(out)
    infos, specs = pick(suite, tasks, methods)
    if any(MISSING_ROOT in t.spec for t in infos):
        raise ConfigError(f"suite {suite.name}: {suite.benchmark} needs the data root: pass --data-root DIR")
    write_json(out / "suite.json", suite.model_dump(mode="json"))
    total = build_plan(suite, out, tasks, methods)["counts"]["total"]
    loaded: dict[str, TaskData] = {}  # the task of the latest run that trained (one task's data in memory)

    def execute_one(task: TaskInfo, method: MethodSpec, run: RunSpec, extra: dict[str, Any]) -> dict[str, Any]:
        if task.name not in loaded:
            loaded.clear()
            loaded[task.name] = load_data(task.spec, seed=suite.selection_seed)
        opts = "".join(f" {k}={v}" for k, v in run.options)
        log(f"{task.name} / {method.name} / {run.phase} lr={run.lr} wd={run.wd}{opts} seed={run.seed}")
        r = execute(suite, task, method, run, out, loaded[task.name], progress, **extra)
        log("    -> " + ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items() if k.endswith("top1")))
        return r

    pairs = [(t, m) for t in infos for m in specs]
    counts = work(suite, out, pairs, execute_one, workers or WorkerOptions(), log)
    return {"out": str(out), "total": total, "trained": counts["trained"], "skipped": counts["skipped"]}
