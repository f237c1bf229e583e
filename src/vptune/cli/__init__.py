"""The ``vptune`` command line: a thin layer that builds configs and calls library functions.

One module per command group, each exposing ``add_commands(sub)``; :data:`COMMAND_MODULES` is the explicit list
(imported plainly: a module that fails to import is an error, never a silently missing command). Flags that set a
config field are declared once, in :mod:`vptune.cli.flags`.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import VptuneError
from . import bench, data, demo, export, info, serve, task, train, tune
from .common import Interrupted

# `vptune --help` lists the commands in this order
COMMAND_MODULES = (train, task, export, info, bench, tune, demo, serve, data)


def build_parser() -> argparse.ArgumentParser:
    """The full ``vptune`` parser with every command registered."""
    parser = argparse.ArgumentParser(prog="vptune", description="Visual Prompt Tuning for timm vision Transformers")
    parser.add_argument("--version", action="version", version=f"vptune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def command_options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """Every option string (``--weights``, ...) that ``vptune COMMAND`` accepts."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt for action in sub.choices[command]._actions for opt in action.option_strings}


def error_text(err: VptuneError, options: set[str]) -> str:
    """The error's message; errors that advise flags (``message(options)``) name only the command's own."""
    advise = getattr(err, "message", None)
    return advise(options) if callable(advise) else str(err)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vptune`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VptuneError as err:
        print(
            f"vptune {args.command}: error: {error_text(err, command_options(parser, args.command))}", file=sys.stderr
        )
        return 2
    except BrokenPipeError:  # `vptune methods | head`: the reader left; stop quietly as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again
        return 141
    except KeyboardInterrupt as err:
        text = str(err) if isinstance(err, Interrupted) else "run the same command again to resume"
        print(f"vptune {args.command}: interrupted: {text}", file=sys.stderr)
        return 130


__all__ = ["COMMAND_MODULES", "build_parser", "main"]
