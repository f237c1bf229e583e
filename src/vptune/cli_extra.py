"""Subcommands beyond the core contract (data, demo, pretrain, ...), registered on the main parser."""

from __future__ import annotations

import argparse


def add_extra_commands(sub: argparse._SubParsersAction) -> None:
    """Attach the extra subcommands to ``vptune``'s subparsers."""
