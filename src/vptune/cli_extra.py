"""Subcommands beyond the core contract (pretrain, data, demo, ...), registered on the main parser."""

from __future__ import annotations

import argparse
import json


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainRecipe, pretrain, refresh_probe

    if args.probe_only:
        card = refresh_probe(args.out)
        print(json.dumps(card["linear_probe"], indent=2))
        return 0
    fields = {k: getattr(args, k) for k in ("steps", "num_classes", "per_class", "seed", "lr", "batch_size")}
    recipe = PretrainRecipe(**{k: v for k, v in fields.items() if v is not None})
    card = pretrain(recipe, args.out, progress=not args.no_progress)
    print(
        json.dumps(
            {k: card[k] for k in ("weights_file", "upstream_val_top1", "wall_seconds", "linear_probe")}, indent=2
        )
    )
    return 0


# Further command groups, one module each, every one exposing ``add_commands(sub)``.
COMMAND_MODULES = ("cli_bench", "cli_tune")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve task artifacts over HTTP on one shared backbone (FastAPI + uvicorn)."""
    from .serve.options import serve_from_args

    return serve_from_args(args)


def add_extra_commands(sub: argparse._SubParsersAction) -> None:
    """Attach the extra subcommands to ``vptune``'s subparsers."""
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"vptune.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"vptune.{name}":
                raise
            continue
        module.add_commands(sub)
    p = sub.add_parser("pretrain", help="pre-train the micro ViT on generated fractals (offline)")
    p.add_argument("--out", required=True, help="folder for the weights and MODEL_CARD.{md,json}")
    p.add_argument("--steps", type=int, help="optimiser steps (default 1000, the bundled recipe)")
    p.add_argument("--num-classes", type=int, help="fractal classes (default 100)")
    p.add_argument("--per-class", type=int, help="images per class (default 100)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--probe-only", action="store_true", help="only re-run the linear-probe check on DIR's weights")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("serve", help="serve task artifacts over HTTP, many tasks on one backbone")
    from .serve.options import add_serve_arguments

    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="adapt the bundled micro ViT to offline tasks with four methods (offline)")
    p.add_argument("--out", default="runs/demo", help="output folder (re-running skips finished runs)")
    p.add_argument("--tasks", help="comma-separated offline tasks (default: digits,dsprites_location)")
    p.add_argument("--methods", help="comma-separated subset of linear,full,vpt-shallow,vpt-deep")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run")
    p.add_argument("--model", default="vptune_micro_vit", help="backbone (default: the bundled micro ViT)")
    p.add_argument("--weights", help="local backbone weights file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="offline task suite: list tasks, export them in the VTAB-1k folder layout")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="list the offline tasks")
    e = data_sub.add_parser("export", help="write images + train800/val200/train800val200/test lists")
    e.add_argument("task", help="offline task name (or 'all')")
    e.add_argument("--root", required=True, help="folder to write ROOT/TASK/ into")
    c = data_sub.add_parser("check", help="validate a vtab1k/fgvc/offline tree before training (streams images)")
    c.add_argument("--suite", required=True, choices=["vtab1k", "fgvc", "offline"])
    c.add_argument("--root", help="tree root (offline: an exported tree; omit to check the generated tasks)")
    c.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    c.add_argument("--no-verify", action="store_true", help="only check that images exist, do not open them")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_data)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_METHODS, DEMO_TASKS, render_report, run_demo

    tasks = tuple(args.tasks.split(",")) if args.tasks else DEMO_TASKS
    methods = tuple(args.methods.split(",")) if args.methods else tuple(DEMO_METHODS)
    unknown = [m for m in methods if m not in DEMO_METHODS]
    if unknown:
        from .errors import ConfigError

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


def cmd_data(args: argparse.Namespace) -> int:
    from .data.offline import export_vtab_layout, list_offline_tasks

    if args.data_command == "check":
        from .data.check import check_suite, format_report

        tasks = args.tasks.split(",") if args.tasks else None
        report = check_suite(args.suite, args.root, tasks, verify_images=not args.no_verify)
        print(json.dumps(report, indent=2) if args.json else format_report(report))
        return 0 if report["ok"] else 1
    if args.data_command == "list":
        for t in list_offline_tasks():
            print(f"offline:{t.name:<22} {t.group:<12} {len(t.classes):>3} classes  {t.source}")
        return 0
    names = [t.name for t in list_offline_tasks()] if args.task == "all" else [args.task.removeprefix("offline:")]
    for name in names:
        try:
            folder = export_vtab_layout(name, args.root)
        except (ValueError, FileExistsError) as err:
            from .errors import DataError

            raise DataError(str(err)) from None
        print(f"wrote {folder}")
    return 0
