"""``vptune serve``: task artifacts over HTTP, many tasks on one shared backbone (FastAPI + uvicorn).

Keys, limits and task management are :class:`vptune.serve.config.ServeConfig`; its flags come from
:func:`vptune.serve.options.add_serve_arguments`.
"""

from __future__ import annotations

import argparse

from ..errors import VptuneError
from ..serve.options import add_serve_arguments, serve_from_args
from .common import add_backbone_overrides


def cmd_serve(args: argparse.Namespace) -> int:
    tasks: dict[str, str] = {}
    for spec in args.task:
        name, sep, path = spec.partition("=")
        if not (sep and name and path) or name in tasks:
            raise VptuneError(f"--task '{spec}': use NAME=DIR with a new NAME each time, e.g. --task pets=runs/pets")
        tasks[name] = path
    backbone = {"model_name": args.model, "weights": args.weights, "pretrained": False if args.no_pretrained else None}
    return serve_from_args(args, tasks, backbone)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune serve``."""
    p = sub.add_parser(
        "serve", help="serve task artifacts over HTTP, many tasks on one backbone, with a browser page at /"
    )
    p.add_argument("--task", action="append", required=True, metavar="NAME=DIR", help="task folder, repeatable")
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address (default: 127.0.0.1; others need a key and --trusted-host)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    add_backbone_overrides(p)
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
