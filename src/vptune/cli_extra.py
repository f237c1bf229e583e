"""Subcommands beyond the core contract (pretrain, data, demo, ...), registered on the main parser."""

from __future__ import annotations

import argparse
import json


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainRecipe, pretrain

    fields = {k: getattr(args, k) for k in ("steps", "num_classes", "per_class", "seed", "lr", "batch_size")}
    recipe = PretrainRecipe(**{k: v for k, v in fields.items() if v is not None})
    card = pretrain(recipe, args.out, progress=not args.no_progress)
    print(
        json.dumps(
            {k: card[k] for k in ("weights_file", "upstream_val_top1", "wall_seconds", "linear_probe")}, indent=2
        )
    )
    return 0


def add_extra_commands(sub: argparse._SubParsersAction) -> None:
    """Attach the extra subcommands to ``vptune``'s subparsers."""
    p = sub.add_parser("pretrain", help="pre-train the micro ViT on generated fractals (offline)")
    p.add_argument("--out", required=True, help="folder for the weights and MODEL_CARD.{md,json}")
    p.add_argument("--steps", type=int, help="optimiser steps (default 1200)")
    p.add_argument("--num-classes", type=int, help="fractal classes (default 100)")
    p.add_argument("--per-class", type=int, help="images per class (default 100)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pretrain)
