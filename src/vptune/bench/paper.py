"""The paper's figures (Jia et al., "Visual Prompt Tuning", ECCV 2022), shipped as package data.

``vptune/bench/data/paper_results.csv`` is a copy of the reference table: columns backbone, method,
benchmark, group, task, top1 (%), kind (``task`` or ``group_mean``), total_params_x. They are the paper's
numbers, not measured by vptune; reports show them beside ours only when suite, backbone, protocol and precision
match the paper's (:func:`paper_mismatch`), and otherwise say which setting differs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

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


PAPER_SUITES = ("vtab1k", "fgvc")  # the shipped suites that run the paper's whole protocol (p searched)


def paper_mismatch(results: list[dict[str, Any]]) -> str | None:
    """Why the paper's figures do not apply to these results (None when suite, backbone and protocol match).

    Paper figures sit beside ours only for the shipped ``vtab1k`` / ``fgvc`` suites (the paper's grid, p
    searched), the paper's backbone, the ``paper`` protocol (last-epoch val selection) and fp32 training.
    """
    reasons = []
    suites = sorted({str(r.get("suite")) for r in results})
    if not set(suites) <= set(PAPER_SUITES):
        reasons.append(f"suite {', '.join(suites)} is not the paper's protocol suite ({' / '.join(PAPER_SUITES)})")
    backbones = sorted({str(r.get("backbone")) for r in results})
    if backbones != [PAPER_BACKBONE]:
        reasons.append(f"backbone {', '.join(backbones)} is not the paper's {PAPER_BACKBONE}")
    protocols = sorted({str(r.get("protocol")) for r in results})
    if protocols != ["paper"]:
        reasons.append(f"protocol {', '.join(protocols)} is not the paper's (paper: last-epoch val selection)")
    benchmarks = sorted({str(r.get("benchmark")) for r in results})
    if not set(benchmarks) & set(PAPER_BENCHMARKS):
        reasons.append(f"benchmark {', '.join(benchmarks)} is not in the paper's tables")
    amps = sorted({_precision(r) for r in results})
    if amps != ["fp32"]:
        reasons.append(f"precision {', '.join(amps)} is not the paper's fp32")
    return "; ".join(reasons) or None


def _precision(result: dict[str, Any]) -> str:
    """fp32, or the autocast dtype a CUDA run used (``train.amp`` auto/bf16/fp16)."""
    train = (result.get("config") or {}).get("train", {})
    amp = train.get("amp", "off")
    on_cuda = str(result.get("provenance", {}).get("device", "cpu")).startswith("cuda")
    if amp == "off" or not on_cuda:
        return "fp32"
    return "bf16/fp16 autocast" if amp == "auto" else f"{amp} autocast"


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
