"""Do the methods' default optimiser settings train? Defaults vs a small lr x weight-decay grid, on offline digits.

Every method trains as a new user's ``vptune train --model vptune_micro_vit --data offline:digits --method M
--epochs 5`` would (CLI defaults otherwise: batch 32, train800, lr scaled by batch/256; 5 epochs instead of 10
to fit the 2-core machine, which makes a default lr harder to get right, not easier), once with no optimiser settings
(the method's ``default_optim``) and once per point of a small grid over its default optimiser ("tuned": the
point with the best val200 top-1 at the last epoch, reported on test). Runs are keyed by method, the method's
default head initialisation and the optimiser settings, so changing a method's default head init retrains it.
``--old`` adds the settings every method had before defaults existed (SGD lr 0.1 unscaled, weight decay 1e-4).
Runs are appended to OUT/results.jsonl and skipped when re-run, so the script resumes; the table is printed from
one results file.

    nice -n 19 python benchmarks/default_optim.py --out runs/default-optim --old > default_optim.log 2>&1 &
    python benchmarks/default_optim.py --out runs/default-optim --table     # print the table only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# small grids over each optimiser's base lr (x batch/256) and weight decay
GRIDS: dict[str, dict[str, list[float]]] = {
    "sgd": {"lr": [0.1, 0.5, 2.0], "weight_decay": [0.0]},
    "adamw": {"lr": [1e-3, 4e-3, 1.6e-2], "weight_decay": [0.05]},
}
OLD = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "scale_lr": False}


def head_init(method: str) -> str:
    """The method's default head initialisation (``official`` unless the method sets another default)."""
    from vptune.methods import METHODS

    return str(METHODS[method].config_cls.model_fields["head_init"].default)


def key(method: str, optim: dict[str, Any]) -> str:
    """Result key: method (+ head init when not the official one), optimiser, base lr, wd, scaling."""
    o = {"scale_lr": True, **optim}
    init = "" if head_init(method) == "official" else f"+{head_init(method)}"
    lr = f"{o['optimizer']}_lr{o['lr']:g}_wd{o['weight_decay']:g}{'' if o['scale_lr'] else '_unscaled'}"
    return f"{method}{init}/{lr}"


def train_one(method: str, optim: dict[str, Any] | None, out: Path, task: str, epochs: int) -> dict[str, Any]:
    from vptune.config import build_config
    from vptune.engine.trainer import fit

    flags = {
        "model.name": "vptune_micro_vit",
        "data.spec": f"offline:{task}",
        "method.name": method,
        "train.epochs": epochs,
        "train.progress": False,
        "out": str(out),
        **{f"optim.{k}": v for k, v in (optim or {}).items()},
    }
    cfg = build_config(flags=flags)
    start = time.perf_counter()
    result = fit(cfg)
    return {
        "optim": cfg.optim.model_dump(include={"optimizer", "lr", "weight_decay", "scale_lr"}),
        "val_top1": result.metrics.get("val_top1"),
        "test_top1": result.metrics.get("test_top1"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def planned(methods: list[str], old: bool) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(kind, method, optim) in run order: defaults first, then the grid point by point, then the old settings."""
    from vptune.config import method_optim_defaults

    runs: list[tuple[str, str, dict[str, Any] | None]] = [("default", m, None) for m in methods]
    grid_points = []
    for m in methods:
        opt = method_optim_defaults(m)["optimizer"]
        grid_points += [
            (i, m, {"optimizer": opt, "lr": lr, "weight_decay": wd})
            for i, (lr, wd) in enumerate((lr, wd) for wd in GRIDS[opt]["weight_decay"] for lr in GRIDS[opt]["lr"])
        ]
    runs += [("grid", m, o) for _, m, o in sorted(grid_points, key=lambda t: t[0])]
    if old:
        runs += [("old", m, dict(OLD)) for m in methods]
    return runs


def load(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return {r["key"]: r for r in rows}


def table(results: dict[str, dict[str, Any]], methods: list[str]) -> str:
    from vptune.config import method_optim_defaults

    lines = [
        "| method (head init) | default: optimizer, base lr, wd | default val / test | tuned: lr, wd (best val) "
        "| tuned val / test | test gap (tuned - default) | old defaults test |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        d = method_optim_defaults(m)
        default = results.get(key(m, d))
        opt = d["optimizer"]
        grid = [
            results.get(key(m, {"optimizer": opt, "lr": lr, "weight_decay": wd}))
            for lr in GRIDS[opt]["lr"]
            for wd in GRIDS[opt]["weight_decay"]
        ]
        grid = [g for g in grid if g] + ([default] if default else [])
        best = max(grid, key=lambda r: r["val_top1"]) if grid else None
        old = results.get(key(m, OLD))

        def pair(r: dict[str, Any] | None) -> str:
            return f"{r['val_top1']:.3f} / {r['test_top1']:.3f}" if r else "-"

        gap = f"{best['test_top1'] - default['test_top1']:+.3f}" if best and default else "-"
        tuned = f"{best['optim']['lr']:g}, {best['optim']['weight_decay']:g}" if best else "-"
        old_test = f"{old['test_top1']:.3f}" if old else "-"
        lines.append(
            f"| {m} ({head_init(m)}) | {opt}, {d['lr']:g}, {d['weight_decay']:g} | {pair(default)} | "
            f"{tuned} ({len(grid)} runs) | {pair(best)} | {gap} | {old_test} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/default-optim")
    ap.add_argument("--task", default="digits", help="offline task")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run (the CLI default is 10)")
    ap.add_argument("--methods", help="comma-separated methods, run in this order (default: every method)")
    ap.add_argument("--old", action="store_true", help="also train with the settings used before defaults existed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table of the runs done so far")
    ap.add_argument("--skip", default="", help="comma-separated run keys not to train (e.g. points known to diverge)")
    args = ap.parse_args()

    import torch

    from vptune.methods import method_names

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",") if args.methods else method_names()
    path = out / "results.jsonl"
    if not args.table:
        for kind, method, optim in planned(methods, args.old):
            from vptune.config import method_optim_defaults

            k = key(method, optim or method_optim_defaults(method))
            if k in load(path) or k in args.skip.split(","):
                continue
            row = {
                "key": k,
                "kind": kind,
                "method": method,
                **train_one(method, optim, out / "runs" / k, args.task, args.epochs),
            }
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{k}: val {row['val_top1']:.3f} test {row['test_top1']:.3f} ({row['seconds']} s)", flush=True)
    print(
        f"offline:{args.task}, micro ViT, CLI defaults but {args.epochs} epochs (batch 32, train800 -> val200 / test)"
    )
    print(table(load(path), methods))


if __name__ == "__main__":
    main()
