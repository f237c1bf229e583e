"""The ``vptune`` command line: a thin layer that builds configs and calls library functions.

One module per command group, each exposing ``add_commands(sub)``; :data:`COMMAND_MODULES` is the explicit list
(imported plainly: a module that fails to import is an error, never a silently missing command). Flags that set a
config field are declared once, in :mod:`vptune.cli.flags`.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import VptuneError
from . import bench, data, demo, info, serve, task, train, tune

# `vptune --help` lists the commands in this order
COMMAND_MODULES = (train, task, info, bench, tune, demo, serve, data)


def build_parser() -> argparse.ArgumentParser:
    """The full ``vptune`` parser with every command registered."""
    parser = argparse.ArgumentParser(prog="vptune", description="Visual Prompt Tuning for timm vision Transformers")
    parser.add_argument("--version", action="version", version=f"vptune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vptune`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VptuneError as err:
        print(f"vptune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vptune {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


__all__ = ["COMMAND_MODULES", "build_parser", "main"]
