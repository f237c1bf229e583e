"""Expanding a suite into runs, their folders and configs, and the selection rule (never on test).

Each run lives in ``OUT/runs/<task>/<method>/<phase>/<lr>_<wd>_<seed>/`` and is finished when it holds
``result.json``. Phases: ``select`` (every grid point, one seed, selection split -> val split, no test) and
``final`` (the selected point, every seed, final split -> test at the end; ``final-frac0.1`` etc. for low-data
runs on seeded subsets of the final split).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, build_config
from . import search
from .search import tie_key
from .suite import MethodSpec, Suite, TaskInfo

RESULT_FILE = "result.json"


# Short names of searched method options in run folders (``..._p10``) and the tie-break preference per axis:
# ties in validation accuracy go to the cheaper, more regularised choice (docs/benchmarks.md, "The protocol").
SHORT = {"prompt_length": "p", "reduction": "r", "rank": "rank", "layers": "k", "k": "k"}


@dataclass(frozen=True)
class RunSpec:
    """One training run of the plan; ``options`` are the searched method options of its grid point."""

    task: str
    method: str
    phase: str
    lr: float | None
    wd: float | None
    seed: int
    train_fraction: float
    train_split: str
    val_split: str | None
    test_split: str | None
    epochs: int | None
    options: tuple[tuple[str, Any], ...] = ()
    batch_size: int | None = None

    def folder(self, out: Path) -> Path:
        """``OUT/runs/<task>/<method>/<phase>/<lr>_<wd>_<seed>[_p<p>...]``."""
        point = f"{fmt_num(self.lr)}_{fmt_num(self.wd)}_{self.seed}" if self.lr is not None else f"selected_{self.seed}"
        point += "".join(f"_{SHORT.get(k, k)}{fmt_num(v) if isinstance(v, float) else v}" for k, v in self.options)
        return out / "runs" / self.task / self.method / self.phase / point

    def to_dict(self, out: Path) -> dict[str, Any]:
        folder = self.folder(out)
        data = asdict(self)
        data["options"] = dict(self.options)
        return {**data, "dir": str(folder), "done": (folder / RESULT_FILE).is_file()}


def fmt_num(value: float | None) -> str:
    """Compact, filename-safe number: 0.0005 -> '0.0005', 1e-05 -> '1e-05', 0 -> '0'."""
    return "none" if value is None else f"{value:g}"


def phase_name(fraction: float) -> str:
    return "final" if fraction >= 1.0 else f"final-frac{fraction:g}"


def batch_size_for(suite: Suite, method: MethodSpec, options: dict[str, Any]) -> int:
    """The method's batch size, or the suite's ``prompt_batch`` rule (batch 64 when p >= 100) for long prompts."""
    batch = method.batch_size or suite.batch_size
    p = options.get("prompt_length", method.method.get("prompt_length"))
    for threshold, size in sorted(suite.prompt_batch.items()):
        if p is not None and int(p) >= threshold:
            batch = size
    return batch


def grid_points(method: MethodSpec) -> list[dict[str, Any]]:
    """Every grid point ``{lr, wd, **method options}`` in listed order (lr outermost)."""
    grid = method.grid
    assert grid is not None
    return search.grid_points({"lr": grid.lr, "wd": grid.wd, **grid.method})


def selection_runs(suite: Suite, task: TaskInfo, method: MethodSpec) -> list[RunSpec]:
    """The grid: one run per point (lr x wd x method options) at the selection seed, no test split."""
    s = suite.splits
    assert s is not None
    runs = []
    for point in grid_points(method):
        options = tuple((k, v) for k, v in point.items() if k not in ("lr", "wd"))
        runs.append(
            RunSpec(
                task=task.name,
                method=method.name,
                phase="select",
                lr=point["lr"],
                wd=point["wd"],
                seed=suite.selection_seed,
                train_fraction=1.0,
                train_split=s.select_train,
                val_split=s.select_val,
                test_split=None,
                epochs=suite.epochs,
                options=options,
                batch_size=batch_size_for(suite, method, dict(options)),
            )
        )
    return runs


def final_runs(suite: Suite, task: TaskInfo, method: MethodSpec, chosen: dict[str, Any] | None) -> list[RunSpec]:
    """Every seed x train fraction at the chosen point (lr/wd None while selection is unfinished)."""
    s = suite.splits
    assert s is not None
    lr = chosen["lr"] if chosen else None
    wd = chosen["wd"] if chosen else None
    options = tuple((chosen or {}).get("options", {}).items())
    epochs = (chosen.get("epochs") if chosen else None) or (suite.epochs if suite.protocol == "paper" else None)
    return [
        RunSpec(
            task=task.name,
            method=method.name,
            phase=phase_name(f),
            lr=lr,
            wd=wd,
            seed=seed,
            train_fraction=f,
            train_split=s.final_train,
            val_split=None,
            test_split=s.test,
            epochs=epochs,
            options=options,
            batch_size=batch_size_for(suite, method, dict(options)),
        )
        for f in sorted(suite.train_fractions, reverse=True)
        for seed in suite.seeds
    ]


def read_result(folder: Path) -> dict[str, Any] | None:
    """The run's result JSON, or None while it is unfinished."""
    path = folder / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def select(results: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """Pick (lr, wd, options[, epochs]) from finished selection results, by validation accuracy only.

    ``paper``: val top-1 at the last epoch. ``best-val-epoch``: the best val top-1 over epochs (earliest such
    epoch), which also fixes the final runs' epoch count. Ties go to the cheaper, more regularised point
    (:func:`tie_key`: smaller lr, then larger wd, then shorter prompt), whatever the order of the runs.
    """
    scored = []
    for r in results:
        curve = r["val_curve"]
        if not curve:
            raise ValueError(f"selection run {r['dir']} has no validation curve")
        if protocol == "paper":
            score, epoch = curve[-1]["top1"], None
        else:
            point = max(curve, key=lambda c: (c["top1"], -c["epoch"]))
            score, epoch = point["top1"], point["epoch"]
        options = dict(r.get("grid_options") or {})
        scored.append({"lr": r["lr"], "wd": r["wd"], "options": options, "val_top1": score, "epochs": epoch})
    if not scored:
        raise ValueError("no selection results to choose from")
    best = min(scored, key=lambda c: (-c["val_top1"], tie_key({"lr": c["lr"], "wd": c["wd"], **c["options"]})))
    ties = sum(c["val_top1"] == best["val_top1"] for c in scored)
    criterion = "val top-1 at the last epoch" if protocol == "paper" else "best val top-1 over epochs"
    return {**best, "criterion": criterion, "candidates": len(results), "ties": ties}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"device": "cpu"}}`` -> ``{"train.device": "cpu"}`` (dotted keys pass through)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def run_config(suite: Suite, task: TaskInfo, method: MethodSpec, run: RunSpec, out: Path, progress: bool) -> RunConfig:
    """The full run configuration of one run (defaults < suite < method < run)."""
    flags: dict[str, Any] = {f"model.{k}": v for k, v in suite.model.items()}
    flags.update({f"data.{k}": v for k, v in suite.data.items()})
    flags.update(
        {
            "data.spec": task.spec,
            "data.train_split": run.train_split,
            "data.val_split": run.val_split,
            "data.test_split": run.test_split,
            "data.train_fraction": run.train_fraction,
            "method": {**method.method, **dict(run.options)},
            "optim.optimizer": method.optimizer,
            "optim.lr": run.lr,
            "optim.weight_decay": run.wd,
            "optim.scale_lr": method.scale_lr,  # None: the run config's rule (base lr x batch / 256 by default)
            "optim.warmup_epochs": suite.warmup_epochs,
            "train.epochs": run.epochs or suite.epochs,
            "train.batch_size": run.batch_size or method.batch_size or suite.batch_size,
            "train.seed": run.seed,
            "train.val_every": suite.val_every if run.val_split else 0,
            "train.progress": progress,
            "out": str(run.folder(out)),
        }
    )
    flags.update(flatten(suite.overrides))
    flags.update(flatten(method.overrides))
    # None means "unset" to build_config, so the splits that a phase must not use are set afterwards
    cfg = build_config(flags={k: v for k, v in flags.items() if v is not None})
    cfg.data.val_split = run.val_split
    cfg.data.test_split = run.test_split
    return cfg
