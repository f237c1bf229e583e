"""``vptune bench``, ``vptune report`` and ``vptune visualize``: thin wrappers over :mod:`vptune.bench`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import VptuneError
from .common import add_device, add_json, add_no_progress, names

NO_OUT = "<no --out>"  # dry runs without --out: nothing is done yet


def missing_task_folders(suite: Any, tasks: list[dict[str, Any]]) -> list[str]:
    """Task folders a vtab1k / fgvc plan needs that are not under --data-root (all of them without one)."""
    if suite.benchmark not in ("vtab1k", "fgvc"):
        return []
    from ..data.fgvc import find_fgvc_dataset
    from ..data.vtab import find_vtab_task, resolve_task_dir

    if not suite.data_root:
        return [t["name"] for t in tasks]
    root, find = (
        Path(suite.data_root).expanduser(),
        find_vtab_task if suite.benchmark == "vtab1k" else find_fgvc_dataset,
    )
    missing = []
    for t in tasks:
        entry = find(t["name"])
        if resolve_task_dir(root, t["name"], tuple(getattr(entry, "aliases", ()))) is None:
            missing.append(t["name"])
    return missing


def missing_advice(suite: Any, missing: list[str]) -> str:
    """One paragraph: which folders are missing under which root, and how to get and check them."""
    where = f"under --data-root '{suite.data_root}'" if suite.data_root else "(no --data-root given)"
    get = (
        "export them with vptune.data.tfds_export.export_tfds_task (needs tensorflow-datasets; docs/benchmarks.md)"
        if suite.benchmark == "vtab1k"
        else "download the FGVC data sets into ROOT/NAME folders (docs/benchmarks.md)"
    )
    return (
        f"vptune bench: {len(missing)} task folders missing {where}: {', '.join(missing)}; {get}, then check them "
        f"with `vptune data check --suite {suite.benchmark} --root ROOT`"
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import build_plan, load_suite, run_suite, write_report

    suite = load_suite(args.suite, args.set, data_root=args.data_root)
    tasks, methods = names(args.tasks), names(args.methods)
    if args.from_best:
        from ..bench.from_best import apply_best
        from ..tune import load_best

        apply_best(suite, load_best(args.from_best), args.from_best)
    if args.dry_run:
        plan = build_plan(suite, args.out or NO_OUT, tasks, methods)
        missing = missing_task_folders(suite, plan["tasks"])
        if missing:
            plan["missing_task_folders"] = missing
        if args.json:
            print(json.dumps(plan, indent=2))
        else:
            print(f"suite {plan['suite']} ({plan['benchmark']}), protocol {plan['protocol_description']}")
            for t in plan["tasks"]:
                print(f"  task {t['name']:<22} {t['group']:<12} {t['num_classes'] or '?':>4} classes  {t['spec']}")
            for m in plan["methods"]:
                grid = m["grid"]
                axes = "".join(f" x {len(v)} {k}" for k, v in grid["method"].items())
                print(f"  method {m['name']:<20} {m['optimizer']:<6} {len(grid['lr'])} lr x {len(grid['wd'])} wd{axes}")
            print("runs: " + ", ".join(f"{k} {v}" for k, v in plan["counts"].items()))
        if missing:
            print(missing_advice(suite, missing), file=sys.stderr)
            return 1
        return 0
    if not args.out:
        raise VptuneError("pass --out DIR (runs, result JSONs and the report go there)")
    from ..bench.workers import WorkerOptions

    workers = WorkerOptions(storage=args.storage, heartbeat_s=args.heartbeat, grace_s=args.grace, poll_s=args.poll)
    if args.worker_name:
        workers.worker = args.worker_name
    summary = run_suite(suite, args.out, tasks=tasks, methods=methods, progress=not args.no_progress, workers=workers)
    if not args.no_report:
        rep = write_report(args.out)
        summary["report"] = rep["files"]
    print(
        json.dumps(summary, indent=2)
        if args.json
        else f"trained {summary['trained']}, skipped {summary['skipped']} "
        f"(already done) of {summary['total']} runs in {args.out}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..bench import write_report

    rep = write_report(args.dir, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in rep.items() if not k.startswith("_")}, indent=2, default=str))
    else:
        print(Path(rep["files"][0]).read_text())
        print("wrote " + ", ".join(rep["files"]), file=sys.stderr)
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from ..bench.visualize import visualize_task

    if args.attention:  # attention maps (vptune.viz.attention_grid); --data is not needed
        from ..viz.attention_grid import attention_grids

        res = attention_grids(args.dir, args.attention, layers=args.layers, out=args.out, device=args.device)
        print(json.dumps(res, indent=2) if args.json else "wrote " + ", ".join(res["files"]))
        return 0
    if not args.data:
        raise VptuneError("vptune visualize: give --data SPEC (t-SNE of a split) or --attention IMAGE... (maps)")
    res = visualize_task(
        args.dir,
        args.data,
        split=args.split,
        out=args.out,
        max_images=args.max_images,
        device=args.device,
        seed=args.seed,
    )
    print(
        json.dumps(res, indent=2) if args.json else f"wrote {res['out']} ({res['n']} images, {res['classes']} classes)"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bench``, ``report`` and ``visualize`` on ``vptune``'s subparsers."""
    p = sub.add_parser("bench", help="run a benchmark suite with the paper's protocol (resumable)")
    p.add_argument(
        "suite",
        help="shipped suite (vtab1k, fgvc: the paper's protocol with p searched; vtab1k-fixed-p, fgvc-fixed-p: cheaper "
        "variants with p fixed at 10; vtab1k-scale: ViT-B/L/H; offline, offline-quick, offline-prompt-length, "
        "offline-low-data; offline-backbones: micro ViT, Swin, ConvNeXt; offline-seg: segmentation, mIoU) or a "
        "suite YAML file. Every lr is a base lr, scaled by batch/256 for SGD and AdamW (optim.scale_lr, true by "
        "default, as train and tune)",
    )
    p.add_argument("--out", help="output folder: runs/, result JSONs, report (required unless --dry-run)")
    p.add_argument("--data-root", help="ROOT of the vtab1k / fgvc tree (vtab1k:ROOT/TASK, fgvc:ROOT/NAME)")
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    p.add_argument("--methods", help="comma-separated subset of the suite's method labels")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite field, e.g. --set epochs=5 --set seeds=[0,1]; repeatable",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (runs, tasks, class counts); train nothing; exit 1 naming missing task folders",
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument(
        "--from-best",
        metavar="FILE",
        help="`vptune tune`'s best.json (or its folder): the suite's methods of the tuned method train at the tuned "
        "settings instead of their grid (selection = that one point; final seeds and test as the suite); not the "
        "paper's protocol, and the report's description says so",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="share the suite with other workers through this Optuna database: start the same command (same --out "
        "on a shared file system) in any number of processes or machines; each run is claimed by one worker. "
        "sqlite:///OUT/bench.db for one machine, postgresql://USER@HOST/DB or mysql+pymysql://... for many "
        "(default: in memory, this process only)",
    )
    p.add_argument("--heartbeat", type=int, default=30, metavar="S", help="seconds between heartbeats (default 30)")
    p.add_argument(
        "--grace",
        type=int,
        default=120,
        metavar="S",
        help="a run without a heartbeat for S seconds (its worker died) is queued again (default 120)",
    )
    p.add_argument("--poll", type=float, default=5.0, metavar="S", help="idle wait for other workers' runs (default 5)")
    p.add_argument("--worker-name", help="this worker's name in the database and logs (default HOST:PID)")
    add_no_progress(p)
    add_json(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="report.md + report.csv + plots from a bench folder's result JSONs")
    p.add_argument("dir", help="the bench output folder")
    p.add_argument("--out", help="write the report here (default: DIR)")
    add_json(p, "print the report data as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "visualize", help="frozen backbone vs a task artifact: t-SNE of features (--data) or attention maps (PNG)"
    )
    p.add_argument("dir", help="task folder (e.g. OUT/runs/TASK/METHOD/final/LR_WD_SEED)")
    p.add_argument("--data", help="data spec of the task for t-SNE, e.g. vtab1k:ROOT/dtd or offline:digits")
    p.add_argument("--split", default="test", help="split to embed (default: test)")
    p.add_argument(
        "--attention",
        nargs="+",
        metavar="IMAGE",
        help="instead of t-SNE: per image, a PNG grid of [CLS]->patches and prompts->patches attention per layer "
        "and attention rollout, next to the frozen backbone's (ViT family; DIR/attention_IMAGE.png)",
    )
    p.add_argument("--layers", help="with --attention: comma-separated block indices (default: all)")
    p.add_argument("--out", help="PNG file (default: DIR/tsne_SPLIT.png); with --attention: the folder for the grids")
    p.add_argument(
        "--max-images", type=int, default=1000, help="seeded subset of the split when larger (default: 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of t-SNE (default: 0)")
    add_device(p)
    add_json(p)
    p.set_defaults(func=cmd_visualize)
