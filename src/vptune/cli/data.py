"""``vptune data``: the offline task suite (list, export) and checks of dataset trees."""

from __future__ import annotations

import argparse
import json


def cmd_data(args: argparse.Namespace) -> int:
    from ..data.offline import export_vtab_layout, list_offline_tasks

    if args.data_command == "check":
        from ..data.check import check_suite, format_report

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
            from ..errors import DataError

            raise DataError(str(err)) from None
        print(f"wrote {folder}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune data {list,export,check}``."""
    p = sub.add_parser("data", help="offline task suite: list tasks, export them in the VTAB-1k folder layout")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="list the offline tasks")
    e = data_sub.add_parser("export", help="write images + train800/val200/train800val200/test lists")
    e.add_argument("task", help="offline task name (or 'all')")
    e.add_argument("--root", required=True, help="folder to write ROOT/TASK/ into")
    c = data_sub.add_parser("check", help="validate a vtab1k/fgvc/offline tree before training (streams images)")
    c.add_argument("--suite", required=True, choices=["vtab1k", "fgvc", "offline"], help="which tree layout")
    c.add_argument("--root", help="tree root (offline: an exported tree; omit to check the generated tasks)")
    c.add_argument("--tasks", help="comma-separated task names (default: all of the suite)")
    c.add_argument("--no-verify", action="store_true", help="only check that images exist, do not open them")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_data)
