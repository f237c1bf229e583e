"""The paper's figures (Jia et al., "Visual Prompt Tuning", ECCV 2022), shipped as package data.

``vptune/bench/data/paper_results.csv`` is a copy of the reference table: columns backbone, method,
benchmark, group, task, top1 (%), kind (``task`` or ``group_mean``), total_params_x. They are the paper's
numbers, not measured by vptune; reports show them beside ours only when backbone and benchmark match.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources

PAPER_BACKBONE = "vit_base_patch16_224.orig_in21k"
PAPER_BENCHMARKS = ("vtab1k", "fgvc")
PAPER_LABEL = "paper (Jia et al. 2022)"


@dataclass
class PaperTable:
    """The paper's per-task and per-group accuracies and parameter multiples for one backbone."""

    tasks: dict[tuple[str, str], float] = field(default_factory=dict)  # (method, task) -> top1
    groups: dict[tuple[str, str], float] = field(default_factory=dict)  # (method, group) -> group mean
    params: dict[str, float] = field(default_factory=dict)  # method -> total params (x backbone)


def read_paper_rows() -> list[dict[str, str]]:
    """The shipped CSV as dict rows."""
    text = (resources.files("vptune.bench") / "data" / "paper_results.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def paper_table(backbone: str, benchmarks: set[str]) -> PaperTable | None:
    """The paper's numbers for ``backbone`` on ``benchmarks``, or None when they do not match the paper's."""
    wanted = set(benchmarks) & set(PAPER_BENCHMARKS)
    if backbone != PAPER_BACKBONE or not wanted:
        return None
    table = PaperTable()
    for row in read_paper_rows():
        if row["backbone"] != backbone or row["benchmark"] not in wanted:
            continue
        top1 = float(row["top1"])
        if row["kind"] == "task":
            table.tasks[(row["method"], row["task"])] = top1
        elif row["kind"] == "group_mean":
            table.groups[(row["method"], row["group"])] = top1
        if row.get("total_params_x"):
            table.params[row["method"]] = float(row["total_params_x"])
    return table
