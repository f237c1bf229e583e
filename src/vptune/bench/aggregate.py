"""From result JSONs to the paper's numbers: per-task mean +- std over seeds, group means, wins against full
fine-tuning, total parameters as a multiple of one backbone, stored bytes per task.

Accuracies are percentages (test top-1 x 100), as in the paper. Only ``final`` runs count; selection runs
never carry test numbers.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .plan import RESULT_FILE


@dataclass
class Cell:
    """One (method, task): the test accuracies (%) of its seeds."""

    method: str
    task: str
    group: str
    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def load_results(out: str | Path) -> list[dict[str, Any]]:
    """Every ``result.json`` under ``OUT/runs``, in path order."""
    paths = sorted(Path(out).glob(f"runs/**/{RESULT_FILE}"))
    return [json.loads(p.read_text()) for p in paths]


def final_results(results: list[dict[str, Any]], fraction: float | None = 1.0) -> list[dict[str, Any]]:
    """Final-phase results (of one train fraction, or all when ``fraction`` is None)."""
    return [
        r
        for r in results
        if r["phase"].startswith("final") and (fraction is None or abs(r["train_fraction"] - fraction) < 1e-9)
    ]


def orders(results: list[dict[str, Any]], out: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(methods, tasks) in suite order when ``OUT/suite.json`` exists, else catalogue / first-seen order."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    tasks = list(dict.fromkeys(r["task"] for r in results))
    suite_file = Path(out) / "suite.json" if out else None
    if suite_file and suite_file.is_file():
        suite = json.loads(suite_file.read_text())
        m_order = [m["name"] for m in suite.get("methods", [])]
        t_order = [t["name"] if isinstance(t, dict) else t for t in suite.get("tasks", [])]
        methods.sort(key=lambda m: m_order.index(m) if m in m_order else len(m_order))
        tasks.sort(key=lambda t: t_order.index(t) if t in t_order else len(t_order))
    else:
        from ..data.fgvc import FGVC_DATASETS
        from ..data.vtab import VTAB_TASKS

        canon = [t.name for t in VTAB_TASKS] + [d.name for d in FGVC_DATASETS]
        tasks.sort(key=lambda t: canon.index(t) if t in canon else len(canon))
    return methods, tasks


def cells(finals: list[dict[str, Any]]) -> dict[tuple[str, str], Cell]:
    """Group final results by (method, task); seeds become the cell's values (%)."""
    out: dict[tuple[str, str], Cell] = {}
    for r in finals:
        top1 = r["metrics"].get("test_top1", r["metrics"].get("test_miou"))  # segmentation suites: mIoU
        if top1 is None:
            continue
        cell = out.setdefault((r["method"], r["task"]), Cell(r["method"], r["task"], r["group"]))
        cell.values.append(100.0 * float(top1))
    return out


def groups_of(table: dict[tuple[str, str], Cell], tasks: list[str]) -> dict[str, list[str]]:
    """Group -> its tasks (in ``tasks`` order)."""
    group = {c.task: c.group for c in table.values()}
    out: dict[str, list[str]] = {}
    for t in tasks:
        if t in group:
            out.setdefault(group[t], []).append(t)
    return out


def canonical_group_sizes(benchmark: str) -> dict[str, int]:
    """Tasks per group of a known benchmark (vtab1k, fgvc, offline); empty for others."""
    if benchmark == "vtab1k":
        from ..data.vtab import VTAB_TASKS

        names = [t.group for t in VTAB_TASKS]
    elif benchmark == "fgvc":
        names = ["fgvc"] * 5
    elif benchmark == "offline":
        from ..data.offline import list_offline_tasks

        names = [t.group for t in list_offline_tasks()]
    else:
        names = []
    return {g: names.count(g) for g in names}


def group_means(
    table: dict[tuple[str, str], Cell],
    methods: list[str],
    groups: dict[str, list[str]],
    sizes: dict[str, int] | None = None,
) -> dict[tuple[str, str], tuple[float, int, int]]:
    """(method, group) -> (unweighted mean over the group's tasks the method has, tasks had, tasks in group).

    ``sizes``: the benchmark's tasks per group (default: the tasks present in ``groups``).
    """
    out = {}
    for m in methods:
        for g, tasks in groups.items():
            means = [table[(m, t)].mean for t in tasks if (m, t) in table]
            if means:
                out[(m, g)] = (statistics.fmean(means), len(means), max(len(tasks), (sizes or {}).get(g, 0)))
    return out


def baseline_label(methods: list[str], method_names: dict[str, str], name: str) -> str | None:
    """The label of a baseline: the label ``name`` itself, else the first label whose method is ``name``."""
    if name in methods:
        return name
    return next((m for m in methods if method_names.get(m) == name), None)


def baseline_labels(
    methods: list[str], method_names: dict[str, str], backbones: dict[str, str], name: str
) -> dict[str, str | None]:
    """method label -> the label of its baseline ``name`` **on the same backbone** (None where that has none).

    A suite over several backbones (``offline-backbones``) compares each family's methods with that family's own
    full fine-tuning or VPT-deep, never with another family's.
    """
    return {
        m: baseline_label([x for x in methods if backbones.get(x) == backbones.get(m)], method_names, name)
        for m in methods
    }


def wins(
    table: dict[tuple[str, str], Cell], methods: list[str], tasks: list[str], bases: dict[str, str | None]
) -> dict[str, Any]:
    """method -> (tasks where its mean is strictly above its baseline's, paired tasks); None without baseline."""
    out: dict[str, Any] = {}
    for m in methods:
        base = bases.get(m)
        paired = [t for t in tasks if (m, t) in table and (base, t) in table]
        if base is None or not paired:
            out[m] = None
            continue
        out[m] = (sum(table[(m, t)].mean > table[(base, t)].mean for t in paired), len(paired))
    return out


def params_multiple(finals: list[dict[str, Any]]) -> dict[str, float]:
    """Total parameters over all tasks as a multiple of one backbone (the paper's accounting).

    One shared backbone plus every task's trainable parameters: ``(backbone + sum(trainable)) / backbone``;
    a method whose tasks each store a whole backbone (full fine-tuning) has no shared copy:
    ``sum(trainable) / backbone`` (``tasks x`` for full).
    """
    per_task: dict[str, dict[str, dict[str, Any]]] = {}
    for r in finals:
        per_task.setdefault(r["method"], {}).setdefault(r["task"], r["params"])
    out = {}
    for m, tasks in per_task.items():
        backbone = next(iter(tasks.values()))["backbone_params"]
        trainable = sum(p["trainable_params"] for p in tasks.values())
        whole = all(p["trainable_params"] >= p["backbone_params"] for p in tasks.values())
        out[m] = (trainable if whole else backbone + trainable) / backbone
    return out


def stored_bytes(finals: list[dict[str, Any]]) -> dict[str, float]:
    """method -> mean artifact bytes per task (task.safetensors + task.json)."""
    per: dict[str, dict[str, int]] = {}
    for r in finals:
        per.setdefault(r["method"], {}).setdefault(r["task"], int(r["artifact_bytes"]))
    return {m: statistics.fmean(v.values()) for m, v in per.items()}


def selections(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, method): the selected point as recorded by the final runs."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        if r["phase"] == "final" and r.get("selection"):
            rows.setdefault((r["task"], r["method"]), {"task": r["task"], "method": r["method"], **r["selection"]})
    return list(rows.values())
