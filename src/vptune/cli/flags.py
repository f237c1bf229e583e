"""Flags that set a run-config field, declared once and derived from the config's own fields.

Each :class:`ConfigFlag` names a dotted config key; its type, choices and help text come from the pydantic field
(``vptune.config``), so the command line, YAML files and ``--set KEY=VALUE`` stay one vocabulary. Commands pick
the flags they take from :data:`RUN_FLAGS` and turn parsed args into a validated config with
:func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..unset import UNSET

if TYPE_CHECKING:
    from ..config import RunConfig


@dataclass(frozen=True)
class ConfigFlag:
    """One command-line flag that sets one config key.

    Attributes:
        key: dotted config key, e.g. ``"optim.lr"``.
        flag: the option string; default ``--`` + the key's last part with dashes.
        const: for switches (``--no-pretrained``): the value set when the switch is given.
        help: help text; default the config field's description.
    """

    key: str
    flag: str | None = None
    const: Any = None
    help: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.key.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


# optimiser keys whose default comes from the method (Method.default_optim)
METHOD_DEFAULT_KEYS = ("optim.optimizer", "optim.lr", "optim.weight_decay")

# Every flag that maps onto a run-config field, in the order `train --help` lists them.
RUN_FLAGS: tuple[ConfigFlag, ...] = (
    ConfigFlag("model.name", "--model"),
    ConfigFlag("model.weights"),
    ConfigFlag("model.pretrained", "--no-pretrained", const=False, help="random backbone weights (tests)"),
    ConfigFlag("data.spec", "--data"),
    ConfigFlag("data.task", "--task"),
    ConfigFlag("method.name", "--method", help="adaptation method (see `vptune methods`)"),
    ConfigFlag("method.prompt_length"),
    ConfigFlag("train.epochs"),
    ConfigFlag("train.batch_size"),
    ConfigFlag("optim.lr"),
    ConfigFlag("optim.weight_decay", "--wd"),
    ConfigFlag("optim.optimizer"),
    ConfigFlag("model.img_size"),
    ConfigFlag("train.seed"),
    ConfigFlag("train.device"),
    ConfigFlag("data.skip_bad_images", const=True, help="skip and count unreadable images"),
    ConfigFlag("out", help="output folder: checkpoints, metrics, task artifact; resumes an unfinished run"),
    ConfigFlag("train.progress", "--no-progress", const=False, help="no progress bars"),
)


def run_flags(*, without: tuple[str, ...] = ()) -> tuple[ConfigFlag, ...]:
    """:data:`RUN_FLAGS` less the given config keys (a command that sets them itself)."""
    return tuple(f for f in RUN_FLAGS if f.key not in without)


def config_field(key: str) -> FieldInfo:
    """The pydantic field behind a dotted config key (method keys: the first method that has the field)."""
    from ..config import RunConfig
    from ..methods import METHODS

    section, _, name = key.rpartition(".")
    if not section:
        return RunConfig.model_fields[name]
    if section == "method":
        from ..methods import MethodConfig

        if name in MethodConfig.model_fields:  # shared by every method (name: any registered method)
            return MethodConfig.model_fields[name]
        for cls in METHODS.values():
            if name in cls.config_cls.model_fields:
                return cls.config_cls.model_fields[name]
        raise KeyError(key)
    return RunConfig.model_fields[section].annotation.model_fields[name]  # type: ignore[union-attr]


def _value_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """(argparse type, choices) for a field annotation such as ``int | None`` or ``Literal["sgd", "adamw"]``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), list(args)
    if args and typing.get_origin(annotation) is not Literal and len(args) == 1:
        return _value_type(args[0])
    return (annotation if annotation in (int, float, str) else str), None


def default_note(flag: ConfigFlag, field: FieldInfo) -> str:
    """`` (default: X)`` for the help text; optimiser keys default to the method's (``vptune methods``)."""
    if flag.const is not None:
        return ""
    if flag.key in METHOD_DEFAULT_KEYS:
        return " (default: the method's, see `vptune methods`)"
    if flag.key == "method.name":
        from ..config import DEFAULT_METHOD

        return f" (default: {DEFAULT_METHOD})"
    if flag.key == "out":
        return " (default: runs/DATA-METHOD, e.g. runs/digits-vpt-deep)"
    if field.default in (None, "") or field.default is PydanticUndefined:
        return ""
    return f" (default: {field.default})"


def add_config_flags(parser: argparse.ArgumentParser, flags: tuple[ConfigFlag, ...]) -> None:
    """Declare ``flags`` on ``parser``; types, choices and help come from the config fields."""
    for f in flags:
        field = config_field(f.key)
        text = (f.help or field.description or "") + default_note(f, field)
        if f.const is not None:
            parser.add_argument(f.option, dest=f.dest, action="store_const", const=f.const, default=UNSET, help=text)
            continue
        kind, choices = _value_type(field.annotation)
        parser.add_argument(f.option, dest=f.dest, type=kind, choices=choices, default=UNSET, help=text)


def add_config_file_flags(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE``: the rest of the config, without a flag each."""
    parser.add_argument("--config", help="YAML file with model:, data:, method:, optim:, train:, out: sections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")


def flag_values(args: argparse.Namespace, flags: tuple[ConfigFlag, ...]) -> dict[str, Any]:
    """The dotted config keys the user set on the command line (flags left out are UNSET)."""
    return {f.key: getattr(args, f.dest) for f in flags if getattr(args, f.dest) is not UNSET}


def config_from_args(
    args: argparse.Namespace,
    flags: tuple[ConfigFlag, ...],
    extra: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults < ``--config`` YAML < ``base`` keys < flags (and ``extra`` keys) < ``--set``: one ``RunConfig``."""
    from ..config import build_config

    values = {**(base or {}), **flag_values(args, flags), **(extra or {})}
    if getattr(args, "json", False):
        values["train.progress"] = False
    return build_config(args.config, values, args.set)
