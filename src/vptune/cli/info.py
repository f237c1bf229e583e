"""``vptune methods``: what the library offers, printed without training anything."""

from __future__ import annotations

import argparse

from .common import add_json, emit


def cmd_methods(args: argparse.Namespace) -> int:
    from ..methods import METHODS

    rows = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        fields = {
            f: {"default": info.default, "help": info.description or ""}
            for f, info in cls.config_cls.model_fields.items()
            if f != "name"
        }
        rows.append({"name": name, "summary": cls.summary, "options": fields})
    text = "\n".join(
        f"{r['name']:<16} {r['summary']}\n"
        + "".join(f"    {k} = {v['default']!r}  {v['help']}\n" for k, v in r["options"].items())
        for r in rows
    )
    emit(rows, args.json, text.rstrip())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune methods``."""
    p = sub.add_parser("methods", help="list adaptation methods with their options and defaults")
    add_json(p)
    p.set_defaults(func=cmd_methods)
