"""Paired significance across tasks: Wilcoxon signed-rank (scipy), as in the paper's appendix."""

from __future__ import annotations

import warnings
from typing import Any

from .aggregate import Cell


def wilcoxon_vs(
    table: dict[tuple[str, str], Cell], method: str, baseline: str | None, tasks: list[str]
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of ``method`` against ``baseline`` over their paired task means.

    Returns:
        ``{"n": paired tasks, "p": p-value or None, "statistic": W or None, "mean_diff": mean difference in
        points or None, "note": "" or why the test is n/a}``. The test is n/a without a baseline, with fewer than
        2 paired tasks, or when every difference is zero.
    """
    if baseline is None:
        return {"n": 0, "p": None, "statistic": None, "mean_diff": None, "note": "n/a (no baseline)"}
    if method == baseline:
        return {"n": 0, "p": None, "statistic": None, "mean_diff": None, "note": "baseline"}
    paired = [t for t in tasks if (method, t) in table and (baseline, t) in table]
    diffs = [table[(method, t)].mean - table[(baseline, t)].mean for t in paired]
    mean_diff = sum(diffs) / len(diffs) if diffs else None
    if len(paired) < 2:
        return {"n": len(paired), "p": None, "statistic": None, "mean_diff": mean_diff, "note": "n/a (< 2 tasks)"}
    if all(abs(d) < 1e-12 for d in diffs):
        return {"n": len(paired), "p": None, "statistic": None, "mean_diff": 0.0, "note": "n/a (all differences 0)"}
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings; n is reported beside p
        res = wilcoxon(diffs)
    return {
        "n": len(paired),
        "p": float(res.pvalue),
        "statistic": float(res.statistic),
        "mean_diff": mean_diff,
        "note": "",
    }


def format_test(res: dict[str, Any]) -> str:
    """``p=0.031 (n=19, +1.20)`` or the n/a reason."""
    if res["p"] is None:
        return res["note"] if res["n"] == 0 else f"{res['note']}, n={res['n']}"
    return f"p={res['p']:.3g} (n={res['n']}, {res['mean_diff']:+.2f})"
