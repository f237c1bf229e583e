"""``vptune methods``, ``models`` and ``config``: what the library offers, printed without training anything."""

from __future__ import annotations

import argparse

from .common import add_json, emit


def describe_optim(optim: dict) -> str:
    """``sgd, base lr 1 (x batch/256), weight decay 0`` for a ``default_optim`` mapping."""
    return f"{optim['optimizer']}, base lr {optim['lr']:g} (x batch/256), weight decay {optim['weight_decay']:g}"


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
        rows.append({"name": name, "summary": cls.summary, "default_optim": dict(cls.default_optim), "options": fields})
    text = "\n".join(
        f"{r['name']:<16} {r['summary']}\n"
        + f"    default optimiser: {describe_optim(r['default_optim'])}\n"
        + "".join(f"    {k} = {v['default']!r}  {v['help']}\n" for k, v in r["options"].items())
        for r in rows
    )
    emit(rows, args.json, text.rstrip())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ..backbones.catalog import format_models, models_report

    report = models_report()
    emit(report, args.json, format_models(report))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ..config_keys import config_keys, format_keys

    rows = config_keys()
    emit(rows, args.json, format_keys(rows))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune methods``, ``vptune models`` and ``vptune config``."""
    p = sub.add_parser(
        "methods",
        help="list adaptation methods with their options, defaults and default optimiser",
        description="The default optimiser applies to the optim keys you leave unset (--optimizer, --lr, --wd, "
        "or optim.* in --config / --set); its lr is a base lr, scaled by batch/256 (optim.scale_lr, default true).",
    )
    add_json(p)
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser(
        "models",
        help="bundled backbones, supported timm families, and whether their weights are on this machine",
        description="Checks the bundled assets and the Hugging Face / torch.hub caches on disk; uses no network.",
    )
    add_json(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "config",
        help="every config key (for --config YAML and --set KEY=VALUE) with its type, default and description",
    )
    add_json(p)
    p.set_defaults(func=cmd_config)
