"""Report plots (PNG): accuracy per group per method, accuracy vs prompt length, accuracy vs data fraction."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine.io import atomic_write
from ..reporting import grouped_bar_plot
from .aggregate import Cell, cells, final_results


def group_plot(
    path: Path, methods: list[str], groups: list[str], means: dict[tuple[str, str], tuple[float, int, int]], title: str
) -> None:
    """Grouped bars: one group per x tick, one bar per method (test top-1 as a fraction; missing = 0)."""
    series = {m: [means[(m, g)][0] / 100.0 if (m, g) in means else 0.0 for g in groups] for m in methods}
    grouped_bar_plot(path, groups, series, ylabel="test top-1 (group mean)", title=title)


def line_plot(
    path: Path, series: dict[str, Sequence[tuple[float, float]]], *, xlabel: str, ylabel: str, title: str, logx: bool
) -> None:
    """One line with markers per series of (x, y) points, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, points in series.items():
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if logx:  # log axis, ticks at the measured x values written plainly (1, 10, 50; 0.1, 0.3, 1)
        ax.set_xscale("log")
        xs = sorted({p[0] for points in series.values() for p in points})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _mean_over_common_tasks(tables: dict[Any, dict[tuple[str, str], Cell]], method_of: dict[Any, str]) -> dict:
    """x -> mean over the tasks every x of the same series has (so points are comparable)."""
    out: dict[Any, float] = {}
    for x, table in tables.items():
        series = method_of[x]
        same = [t for k, t in tables.items() if method_of[k] == series]
        common = set.intersection(*({task for (_, task) in t} for t in same))
        values = [c.mean for (_, task), c in table.items() if task in common]
        if values:
            out[x] = statistics.fmean(values)
    return out


def prompt_length_series(results: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Method name -> (prompt length, mean test top-1 %) when labels of one method differ in prompt_length."""
    finals = final_results(results)
    by_label: dict[str, tuple[str, int]] = {}
    for r in finals:
        p = r["method_config"].get("prompt_length")
        if p is not None:
            by_label[r["method"]] = (r["method_config"]["name"], int(p))
    lengths: dict[str, set[int]] = {}
    for name, p in by_label.values():
        lengths.setdefault(name, set()).add(p)
    labels = [lb for lb, (name, _) in by_label.items() if len(lengths[name]) > 1]
    tables = {lb: cells([r for r in finals if r["method"] == lb]) for lb in labels}
    means = _mean_over_common_tasks(tables, {lb: by_label[lb][0] for lb in labels})
    out: dict[str, list[tuple[float, float]]] = {}
    for lb, mean in means.items():
        out.setdefault(by_label[lb][0], []).append((float(by_label[lb][1]), mean))
    return out


def fraction_series(results: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Method -> (train fraction, mean test top-1 %) when low-data runs exist."""
    finals = final_results(results, fraction=None)
    fractions = sorted({r["train_fraction"] for r in finals})
    if len(fractions) < 2:
        return {}
    keys = [(m, f) for m in dict.fromkeys(r["method"] for r in finals) for f in fractions]
    tables = {k: cells([r for r in finals if (r["method"], r["train_fraction"]) == k]) for k in keys}
    tables = {k: t for k, t in tables.items() if t}
    means = _mean_over_common_tasks(tables, {k: k[0] for k in tables})
    out: dict[str, list[tuple[float, float]]] = {}
    for (m, f), mean in means.items():
        out.setdefault(m, []).append((f, mean))
    return out


# (file, series builder, x label, title) of each line plot; a plot is written when its series is non-empty
LINE_PLOTS = (
    ("report_prompt_length.png", prompt_length_series, "prompt length p", "Accuracy vs prompt length"),
    (
        "report_data_fraction.png",
        fraction_series,
        "fraction of the final training split",
        "Accuracy vs training-data size",
    ),
)


def write_plots(out: Path, results: list[dict[str, Any]], methods: list[str], groups: list[str], gm: dict) -> list[str]:
    """Write every applicable plot into ``out``; returns the file names written."""
    written = []
    if groups and methods:
        group_plot(out / "report_groups.png", methods, groups, gm, "Test top-1 per group (mean over tasks and seeds)")
        written.append("report_groups.png")
    for name, series_of, xlabel, title in LINE_PLOTS:
        series = series_of(results)
        if series:
            line_plot(out / name, series, xlabel=xlabel, ylabel="test top-1 (%)", title=title, logx=True)
            written.append(name)
    return written
