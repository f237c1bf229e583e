"""Helpers shared by the command modules: output, and the flags several commands take with one meaning."""

from __future__ import annotations

import argparse
import json
from typing import Any


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print JSON (machine-readable) or a human-readable text."""
    print(json.dumps(data, indent=2, default=str) if as_json or text is None else text)


def names(text: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; None for an empty or missing value."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def add_json(parser: argparse.ArgumentParser, help: str = "print machine-readable JSON") -> None:  # noqa: A002
    parser.add_argument("--json", action="store_true", help=help)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")


def add_backbone_overrides(parser: argparse.ArgumentParser) -> None:
    """Flags of commands that load saved tasks: override the backbone the tasks record."""
    parser.add_argument("--model", help="backbone name (default: the one the task records)")
    parser.add_argument("--weights", help="load the backbone from this local file")
    parser.add_argument("--no-pretrained", action="store_true", help="random backbone weights (tests only)")
    add_device(parser)


def backbone_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for the task loaders from :func:`add_backbone_overrides`' flags."""
    out: dict[str, Any] = {}
    if args.model:
        out["model_name"] = args.model
    if args.weights:
        out["weights"] = args.weights
    if args.no_pretrained:
        out["pretrained"] = False
    return out
