"""``vptune serve``: task artifacts over HTTP, many tasks on one shared backbone (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import VptuneError
from .common import add_backbone_overrides


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as err:
        raise VptuneError(f"vptune serve needs {err.name}: pip install 'vptune[serve]'") from None
    from ..engine.device import resolve_device
    from ..tasks.multitask import MultiTaskModel

    tasks: dict[str, str] = {}
    for spec in args.task:
        name, sep, path = spec.partition("=")
        if not (sep and name and path) or name in tasks:
            raise VptuneError(f"--task '{spec}': use NAME=DIR with a new NAME each time, e.g. --task pets=runs/pets")
        tasks[name] = path
    pretrained = False if args.no_pretrained else None
    bank = MultiTaskModel.from_dirs(
        tasks, model_name=args.model, weights=args.weights, pretrained=pretrained, device=resolve_device(args.device)
    )
    api_key = args.api_key or os.environ.get("VPTUNE_API_KEY") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"vptune serve: warning: listening on {args.host} without an API key", file=sys.stderr)
    app = create_app(bank, api_key=api_key, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune serve``."""
    p = sub.add_parser("serve", help="serve task artifacts over HTTP, many tasks on one backbone")
    p.add_argument("--task", action="append", required=True, metavar="NAME=DIR", help="task folder, repeatable")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    add_backbone_overrides(p)
    p.add_argument("--api-key", help="require this key in the x-api-key header (or set VPTUNE_API_KEY)")
    p.add_argument("--max-batch", type=int, default=32, help="most images per forward pass (default: 32)")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="longest wait for more images before a pass (default: 5.0)"
    )
    p.set_defaults(func=cmd_serve)
