"""Per-family tables of an `offline-backbones` report beside the paper's group means (for README.md here).

    vptune report runs/offline-backbones            # writes runs/offline-backbones/report.csv
    python docs/results/offline-backbones/summary.py runs/offline-backbones/report.csv

Method labels are ``<family>-<method>`` (vit-linear, swin-vpt-deep, convnext-vpt-pad, ...); each family's rows
are compared with the paper's rows of the same family (``vptune/bench/data/paper_results.csv``).
"""

from __future__ import annotations

import csv
import sys
from importlib import resources

FAMILIES = {  # label prefix -> (title, the paper's backbone of that family)
    "vit": ("micro ViT", "vit_base_patch16_224.orig_in21k"),
    "swin": ("micro Swin", "swin_base_patch4_window7_224.ms_in22k"),
    "convnext": ("micro ConvNeXt", "convnext_base.fb_in22k"),
}
GROUPS = ("natural", "specialized", "structured")


def paper_means() -> dict[tuple[str, str, str], float]:
    """(paper backbone, paper method, group) -> the paper's VTAB-1k group mean."""
    text = (resources.files("vptune.bench") / "data" / "paper_results.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    return {
        (r["backbone"], r["method"], r["group"]): float(r["top1"])
        for r in rows
        if r["kind"] == "group_mean" and r["benchmark"] == "vtab1k"
    }


def main(report_csv: str) -> None:
    with open(report_csv) as f:
        rows = list(csv.DictReader(f))
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["kind"] == "task"))
    cell = {(r["method"], r["task"]): r for r in rows if r["kind"] == "task"}
    group = {(r["method"], r["group"]): r for r in rows if r["kind"] == "group_mean"}
    paper = paper_means()
    methods = list(dict.fromkeys(r["method"] for r in rows if r["kind"] == "task"))
    for prefix, (title, paper_backbone) in FAMILIES.items():
        mine = [m for m in methods if m.startswith(prefix + "-")]
        if not mine:
            continue
        print(f"### {title}\n")
        head = ["method", *tasks, *(f"{g} mean" for g in GROUPS), "paper (nat / spec / struct)"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for m in mine:
            values = []
            for t in tasks:
                r = cell.get((m, t))
                values.append(
                    f"{float(r['top1_mean']):.1f} ± {float(r['top1_std'] or 0):.1f} ({r['n_seeds']})" if r else "-"
                )
            for g in GROUPS:
                r = group.get((m, g))
                values.append(f"{float(r['top1_mean']):.1f}" if r else "-")
            name = m[len(prefix) + 1 :]
            ref = [paper.get((paper_backbone, name.replace("-", "_"), g)) for g in GROUPS]
            values.append(" / ".join(f"{v:.1f}" for v in ref) if all(v is not None for v in ref) else "-")
            print(f"| {name} | " + " | ".join(values) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
