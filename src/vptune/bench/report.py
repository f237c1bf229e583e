"""``vptune report DIR``: report.md + report.csv (+ PNG plots) in the paper's format from result JSONs.

Per-task test top-1 (mean +- sample std over seeds), unweighted group means, tasks where each method beats
full fine-tuning, total parameters over all tasks as a multiple of one backbone, stored bytes per task,
Wilcoxon signed-rank tests across tasks, and, when backbone and benchmark match the paper's, the paper's
figures beside ours with the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.io import atomic_write
from ..errors import VptuneError
from .aggregate import (
    baseline_labels,
    canonical_group_sizes,
    cells,
    final_results,
    group_means,
    groups_of,
    load_results,
    orders,
    params_multiple,
    selections,
    stored_bytes,
    wins,
)
from .paper import paper_mismatch, paper_table
from .plots import fraction_series, prompt_length_series, write_plots
from .render import csv_text, render_markdown
from .stats import wilcoxon_vs


def _one(values: set[Any]) -> Any:
    return next(iter(values)) if len(values) == 1 else ", ".join(sorted(map(str, values)))


def build_report(out: str | Path) -> dict[str, Any]:
    """Aggregate every result JSON under ``OUT/runs`` into JSON-ready report data."""
    results = load_results(out)
    if not results:
        raise VptuneError(f"no result.json under '{Path(out) / 'runs'}': run `vptune bench SUITE --out {out}` first")
    finals = final_results(results)
    methods, tasks = orders(finals or results, out)
    table = cells(finals)
    groups = groups_of(table, tasks)
    benchmarks = {r["benchmark"] for r in results}
    sizes = canonical_group_sizes(next(iter(benchmarks))) if len(benchmarks) == 1 else {}
    gm = group_means(table, methods, groups, sizes)
    names = {r["method"]: r["method_config"]["name"] for r in results}
    paper_names = {r["method"]: r.get("paper_method", r["method"]) for r in results}
    backbones = {m: _one({r["backbone"] for r in results if r["method"] == m}) for m in methods}
    full = baseline_labels(methods, names, backbones, "full")
    deep = baseline_labels(methods, names, backbones, "vpt-deep")
    win, px, sb = wins(table, methods, tasks, full), params_multiple(finals), stored_bytes(finals)
    backbone, benchmark = _one({r["backbone"] for r in results}), _one({r["benchmark"] for r in results})
    mismatch = paper_mismatch(results)
    paper = None if mismatch else paper_table(backbone, benchmarks)
    common = {"benchmark": benchmark, "backbone": backbone, "protocol": _one({r["protocol"] for r in results})}
    summary, per_task = [], []
    for m in methods:
        pm = paper_names[m]
        row: dict[str, Any] = {
            **common,
            "method": m,
            "paper_method": pm,
            "method_backbone": backbones[m],
            "baselines": {"full": full[m], "vpt-deep": deep[m]},
            "total_params_x": px.get(m),
            "stored_bytes_per_task": sb.get(m),
            "wins_vs_full": win.get(m),
            "n_tasks": sum((m, t) in table for t in tasks),
            "groups": {},
        }
        for g in groups:
            if (m, g) in gm:
                mean, k, n = gm[(m, g)]
                p = paper.groups.get((pm, g)) if paper else None
                row["groups"][g] = {
                    "mean": mean,
                    "tasks": k,
                    "of": n,
                    "paper": p,
                    "delta": None if p is None else mean - p,
                }
        row["paper_total_params_x"] = paper.params.get(pm) if paper else None
        row["wilcoxon"] = {
            "vs_full": wilcoxon_vs(table, m, full[m], tasks),
            "vs_vpt_deep": wilcoxon_vs(table, m, deep[m], tasks),
        }
        summary.append(row)
        for t in tasks:
            if (m, t) in table:
                c = table[(m, t)]
                p = paper.tasks.get((pm, t)) if paper else None
                per_task.append(
                    {
                        **common,
                        "method": m,
                        "paper_method": pm,
                        "group": c.group,
                        "task": t,
                        "mean": c.mean,
                        "std": c.std,
                        "n_seeds": c.n,
                        "paper": p,
                        "delta": None if p is None else c.mean - p,
                    }
                )
    return {
        **common,
        "protocol_description": _one({r["protocol_description"] for r in results}),
        "suites": sorted({r["suite"] for r in results}),
        "runs": {"final": len(final_results(results, None)), "select": sum(r["phase"] == "select" for r in results)},
        "versions": sorted(
            {
                f"vptune {r['provenance']['vptune']}, torch {r['provenance']['torch']}, timm {r['provenance']['timm']}"
                for r in results
            }
        ),
        "commits": sorted({str(r["provenance"].get("git_commit")) for r in results}),
        "devices": sorted({r["provenance"].get("device_name") or r["provenance"]["device"] for r in results}),
        "paper": paper is not None,
        "paper_mismatch": mismatch,
        "methods": methods,
        "tasks": tasks,
        "groups": groups,
        "baselines_per_backbone": len(set(backbones.values())) > 1,
        "summary": summary,
        "per_task": per_task,
        "selections": sorted(
            selections(results),
            key=lambda r: (tasks.index(r["task"]) if r["task"] in tasks else len(tasks), methods.index(r["method"])),
        ),
        "low_data": fraction_series(results),
        "prompt_length": prompt_length_series(results),
        "_group_means": gm,
        "_results": results,
    }


def write_report(out: str | Path, dest: str | Path | None = None) -> dict[str, Any]:
    """Write report.md, report.csv and the plots into ``dest`` (default: ``out``); returns the report data."""
    rep = build_report(out)
    dest = Path(dest or out)
    dest.mkdir(parents=True, exist_ok=True)
    plots = write_plots(dest, rep["_results"], rep["methods"], list(rep["groups"]), rep["_group_means"])
    atomic_write(dest / "report.md", lambda tmp: Path(tmp).write_text(render_markdown(rep, plots)))
    atomic_write(dest / "report.csv", lambda tmp: Path(tmp).write_text(csv_text(rep)))
    rep["files"] = [str(dest / f) for f in ("report.md", "report.csv", *plots)]
    return rep
