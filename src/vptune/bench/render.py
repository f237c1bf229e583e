"""Rendering report data (from :func:`vptune.bench.report.build_report`) as Markdown and long-format CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..reporting import markdown_table
from .paper import PAPER_LABEL
from .stats import format_test

CSV_COLUMNS = (
    "kind",
    "benchmark",
    "backbone",
    "protocol",
    "method",
    "paper_method",
    "group",
    "task",
    "train_fraction",
    "top1_mean",
    "top1_std",
    "n_seeds",
    "n_tasks",
    "paper_top1",
    "delta",
    "total_params_x",
    "paper_total_params_x",
    "stored_bytes_per_task",
    "wins_vs_full",
)


def _acc(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def _with_paper(ours: float, paper: float | None) -> str:
    return f"{ours:.2f}" if paper is None else f"{ours:.2f} ({paper:.2f}, {ours - paper:+.2f})"


def _bytes(n: float | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def render_markdown(rep: dict[str, Any], plots: list[str]) -> str:
    """The report as Markdown."""
    groups = list(rep["groups"])
    lines = [
        "# vptune benchmark report",
        "",
        f"- Suite: {', '.join(rep['suites'])}; benchmark: {rep['benchmark']}; backbone: `{rep['backbone']}`",
        f"- Protocol: {rep['protocol_description']}",
        f"- Runs: {rep['runs']['final']} final, {rep['runs']['select']} selection; test top-1 in %, mean ± sample std "
        "over seeds; group means are unweighted over the group's tasks",
        f"- Software: {'; '.join(rep['versions'])}; commit {', '.join(rep['commits'])}",
        f"- Devices: {', '.join(rep['devices'])}",
    ]
    if rep.get("paper_mismatch"):
        lines.append(f"- Paper figures not shown: {rep['paper_mismatch']}")
    if rep["paper"]:
        lines.append(
            f"- In brackets: {PAPER_LABEL} and our difference (ours - paper); the paper's numbers are not ours. Its "
            f"parameter multiples count its 24 VTAB-1k + FGVC tasks, ours the {len(rep['tasks'])} tasks reported here"
        )
    lines += ["", "## Summary", ""]
    cols = [("method", "method"), ("params", "total params (x backbone)"), ("bytes", "stored / task")]
    cols += [(f"g:{g}", g) for g in groups] + [("wins", "tasks > full")]
    rows = []
    for s in rep["summary"]:
        row = {"method": s["method"], "bytes": _bytes(s["stored_bytes_per_task"])}
        px, ppx = s["total_params_x"], s["paper_total_params_x"]
        row["params"] = "" if px is None else f"{px:.2f}x" + (f" ({ppx:.2f}x)" if ppx else "")
        for g in groups:
            if g in s["groups"]:
                info = s["groups"][g]
                partial = f" [{info['tasks']}/{info['of']} tasks]" if info["tasks"] < info["of"] else ""
                row[f"g:{g}"] = _with_paper(info["mean"], info["paper"]) + partial
        row["wins"] = "n/a" if s["wins_vs_full"] is None else f"{s['wins_vs_full'][0]}/{s['wins_vs_full'][1]}"
        rows.append(row)
    lines += [markdown_table(rows, cols), ""]
    if rep.get("baselines_per_backbone"):
        lines += [
            "Several backbones: each method is compared with full fine-tuning and VPT-deep **of its own backbone** "
            '("tasks > full" and the Wilcoxon tests below, which name each baseline).',
            "",
        ]
    lines += ["## Per-task test top-1 (%)", ""]
    by = {(r["method"], r["task"]): r for r in rep["per_task"]}
    rows = []
    for m in rep["methods"]:
        cells_txt = {t: f"{by[(m, t)]['mean']:.2f} ± {by[(m, t)]['std']:.2f}" for t in rep["tasks"] if (m, t) in by}
        rows.append({"method": m, **cells_txt})
    seeds = sorted({r["n_seeds"] for r in rep["per_task"]})
    lines += [
        markdown_table(rows, [("method", "method")] + [(t, t) for t in rep["tasks"]]),
        "",
        f"Seeds per cell: {', '.join(map(str, seeds))}.",
        "",
    ]
    if rep["paper"]:
        paired = [r for r in rep["per_task"] if r["paper"] is not None]
        lines += [f"## Per task against the {PAPER_LABEL}", ""]
        cols = [("task", "task"), ("method", "method"), ("ours", "ours"), ("paper", "paper"), ("delta", "difference")]
        rows = [
            {
                "task": r["task"],
                "method": r["method"],
                "ours": _acc(r["mean"]),
                "paper": _acc(r["paper"]),
                "delta": f"{r['delta']:+.2f}",
            }
            for r in paired
        ]
        lines += [markdown_table(rows, cols) if rows else "(no task of ours is in the paper's table)", ""]
    lines += ["## Selected hyper-parameters (on validation data only)", ""]
    cols = [
        ("task", "task"),
        ("method", "method"),
        ("lr", "base lr"),
        ("wd", "wd"),
        ("options", "options"),
        ("epochs", "epochs"),
        ("val", "val top-1"),
        ("criterion", "criterion"),
    ]
    rows = [
        {**s, "lr": f"{s['lr']:g}", "wd": f"{s['wd']:g}", "val": f"{100 * s['val_top1']:.2f}",
         "epochs": s.get("epochs") or "all",
         "options": ", ".join(f"{k}={v}" for k, v in (s.get("options") or {}).items()) or "-"}
        for s in rep["selections"]
    ]  # fmt: skip
    lines += [markdown_table(rows, cols), "", "## Paired Wilcoxon signed-rank tests across tasks (two-sided)", ""]
    named = bool(rep.get("baselines_per_backbone"))

    def _vs(s: dict[str, Any], key: str, base: str) -> str:
        label = s["baselines"][base]
        return format_test(s["wilcoxon"][key]) + (f" vs {label}" if named and label and label != s["method"] else "")

    rows = [
        {"method": s["method"], "full": _vs(s, "vs_full", "full"), "deep": _vs(s, "vs_vpt_deep", "vpt-deep")}
        for s in rep["summary"]
    ]
    lines += [markdown_table(rows, [("method", "method"), ("full", "vs full"), ("deep", "vs vpt-deep")]), ""]
    lines += ["p: two-sided p-value; n: paired tasks; in brackets the mean difference in points.", ""]
    for key, title, xname in (("low_data", "Low-data runs", "fraction"), ("prompt_length", "Prompt length", "p")):
        if rep[key]:
            xs = sorted({x for pts in rep[key].values() for x, _ in pts})
            rows = [{"method": m, **{f"{x:g}": f"{y:.2f}" for x, y in pts}} for m, pts in rep[key].items()]
            cols = [("method", "method")] + [(f"{x:g}", f"{xname} {x:g}") for x in xs]
            lines += [f"## {title} (mean test top-1 over common tasks, %)", "", markdown_table(rows, cols), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def csv_text(rep: dict[str, Any]) -> str:
    """Long-format CSV: one row per (method, task), per (method, group) and per (method) summary."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rep["per_task"]:
        w.writerow(
            {
                **r,
                "kind": "task",
                "train_fraction": 1.0,
                "top1_mean": r["mean"],
                "top1_std": r["std"],
                "paper_top1": r["paper"],
            }
        )
    for s in rep["summary"]:
        base = {k: s[k] for k in ("benchmark", "backbone", "protocol", "method", "paper_method")}
        for g, info in s["groups"].items():
            w.writerow(
                {
                    **base,
                    "kind": "group_mean",
                    "group": g,
                    "task": "mean",
                    "top1_mean": info["mean"],
                    "n_tasks": info["tasks"],
                    "paper_top1": info["paper"],
                    "delta": info["delta"],
                }
            )
        wf = s["wins_vs_full"]
        w.writerow(
            {
                **base,
                "kind": "method",
                "n_tasks": s["n_tasks"],
                "total_params_x": s["total_params_x"],
                "paper_total_params_x": s["paper_total_params_x"],
                "stored_bytes_per_task": s["stored_bytes_per_task"],
                "wins_vs_full": "" if wf is None else f"{wf[0]}/{wf[1]}",
            }
        )
    for m, pts in rep["low_data"].items():
        for x, y in pts:
            w.writerow(
                {"kind": "low_data", "method": m, "train_fraction": x, "top1_mean": y, "backbone": rep["backbone"]}
            )
    return buf.getvalue()
