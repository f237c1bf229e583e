"""``vptune demo`` and ``vptune pretrain``: the offline showcase on the bundled micro ViT."""

from __future__ import annotations

import argparse
import json

from .common import add_no_progress


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..pretrain import PretrainRecipe, pretrain, refresh_probe

    if args.probe_only:
        card = refresh_probe(args.out)
        print(json.dumps(card["linear_probe"], indent=2))
        return 0
    keys = ("model", "steps", "num_classes", "per_class", "seed", "lr", "batch_size")
    fields = {k: getattr(args, k) for k in keys}
    recipe = PretrainRecipe(**{k: v for k, v in fields.items() if v is not None})
    probe_tasks = args.probe_tasks.split(",") if args.probe_tasks else None
    card = pretrain(recipe, args.out, progress=not args.no_progress, probe_tasks=probe_tasks)
    print(
        json.dumps(
            {k: card[k] for k in ("weights_file", "upstream_val_top1", "wall_seconds", "linear_probe")}, indent=2
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import DEMO_METHODS, DEMO_TASKS, render_report, run_demo

    tasks = tuple(args.tasks.split(",")) if args.tasks else DEMO_TASKS
    methods = tuple(args.methods.split(",")) if args.methods else tuple(DEMO_METHODS)
    unknown = [m for m in methods if m not in DEMO_METHODS]
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"--methods: {', '.join(unknown)} not in the demo; choose from {', '.join(DEMO_METHODS)}")
    report = run_demo(
        args.out,
        tasks=tasks,
        methods=methods,
        epochs=args.epochs,
        progress=not args.no_progress,
        model=args.model,
        weights=args.weights,
    )
    print(render_report(report))
    print(f"wrote {args.out}/report.md, report.json and report.png")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune pretrain`` and ``vptune demo``."""
    p = sub.add_parser("pretrain", help="pre-train a micro backbone on generated fractals (offline)")
    p.add_argument(
        "--out", required=True, help="folder for the weights and MODEL_CARD.{md,json} (the same again resumes)"
    )
    p.add_argument(
        "--model",
        help="timm architecture, random init (default vptune_micro_vit; vptune_micro_swin, vptune_micro_convnext, ...)",
    )
    p.add_argument("--steps", type=int, help="optimiser steps (default 1000, the bundled recipe)")
    p.add_argument("--num-classes", type=int, help="fractal classes (default 100)")
    p.add_argument("--per-class", type=int, help="images per class (default 100)")
    p.add_argument("--batch-size", type=int, help="images per step (default: the bundled recipe's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the bundled recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the bundled recipe's)")
    p.add_argument("--probe-tasks", help="comma-separated offline tasks for the card's linear probe (default: all)")
    add_no_progress(p)
    p.add_argument("--probe-only", action="store_true", help="only re-run the linear-probe check on DIR's weights")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("demo", help="adapt the bundled micro ViT to offline tasks with four methods (offline)")
    p.add_argument(
        "--out", default="runs/demo", help="output folder (default: runs/demo; re-running skips finished runs)"
    )
    p.add_argument("--tasks", help="comma-separated offline tasks (default: digits,dsprites_location)")
    p.add_argument("--methods", help="comma-separated subset of linear,full,vpt-shallow,vpt-deep (default: all four)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (default: 6)")
    p.add_argument("--model", default="vptune_micro_vit", help="backbone (default: vptune_micro_vit, bundled)")
    p.add_argument("--weights", help="local backbone weights file")
    add_no_progress(p)
    p.set_defaults(func=cmd_demo)
