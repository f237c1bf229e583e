"""Every run-config key with its type, default and description; closest-name suggestions for mistyped keys."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from .errors import ConfigError


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _sections() -> dict[str, Any]:
    from .config import RunConfig

    return {
        name: field.annotation
        for name, field in RunConfig.model_fields.items()
        if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields") and name != "method"
    }


def check_keys(tree: dict[str, Any]) -> None:
    """Reject unknown sections, keys and method names, naming the closest valid one (before validation)."""
    from .config import RunConfig
    from .methods import METHODS

    sections = _sections()
    for top, value in tree.items():
        if top not in RunConfig.model_fields:
            raise ConfigError(f"{top}: not a config section{suggest(top, RunConfig.model_fields)}; see `vptune config`")
        if top in sections and isinstance(value, dict):
            fields = sections[top].model_fields
            for key in value:
                if key not in fields:
                    hint = suggest(f"{top}.{key}", [f"{top}.{f}" for f in fields])
                    raise ConfigError(f"{top}.{key}: not an option{hint}; see `vptune config`")
    method = tree.get("method")
    if isinstance(method, dict) and "name" in method:
        name = str(method["name"])
        if name not in METHODS:
            choices = ", ".join(sorted(METHODS))
            raise ConfigError(f"method.name: unknown method '{name}'{suggest(name, METHODS)}; choose one of {choices}")
        fields = METHODS[name].config_cls.model_fields
        for key in method:
            if key not in fields:
                raise ConfigError(
                    f"method.{key}: not an option of method '{name}'"
                    f"{suggest(f'method.{key}', [f'method.{f}' for f in fields])}; options: "
                    + ", ".join(f for f in fields if f != "name")
                )


def type_name(annotation: Any) -> str:
    """``int | None`` -> ``int or none``; ``Literal['a', 'b']`` -> ``a|b``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (list, tuple):  # list[int], tuple[float, ...], tuple[float, float]
        return "list of " + " or ".join(dict.fromkeys(type_name(a) for a in args if a is not Ellipsis))
    if args:
        return " or ".join(type_name(a) for a in args)
    return "none" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def config_keys() -> list[dict[str, Any]]:
    """Every dotted key: section fields, ``out``, and the method options (with the methods that have each)."""
    from .config import DEFAULT_METHOD, RunConfig
    from .methods import METHODS

    rows: list[dict[str, Any]] = []
    for section, cls in _sections().items():
        for name, field in cls.model_fields.items():
            rows.append(
                {
                    "key": f"{section}.{name}",
                    "type": type_name(field.annotation),
                    "default": field.default,
                    "description": field.description or "",
                }
            )
    out = RunConfig.model_fields["out"]
    rows.append({"key": "out", "type": "str", "default": "runs/DATA-METHOD", "description": out.description or ""})
    rows.append(
        {
            "key": "method.name",
            "type": "|".join(sorted(METHODS)),
            "default": DEFAULT_METHOD,
            "description": "adaptation method (vptune methods)",
        }
    )
    options: dict[str, dict[str, Any]] = {}
    for mname in sorted(METHODS):
        for name, field in METHODS[mname].config_cls.model_fields.items():
            if name == "name":
                continue
            row = options.setdefault(
                f"{name}={field.default!r}:{type_name(field.annotation)}:{field.description}",
                {
                    "key": f"method.{name}",
                    "type": type_name(field.annotation),
                    "default": field.default,
                    "description": field.description or "",
                    "methods": [],
                },
            )
            row["methods"].append(mname)
    for row in sorted(options.values(), key=lambda r: r["key"]):
        if len(row["methods"]) == len(METHODS):
            row["methods"] = ["all"]
        rows.append(row)
    for row in rows:
        if row["key"] in ("optim.optimizer", "optim.lr", "optim.weight_decay"):
            row["default"] = "the method's (vptune methods)"
    return rows


def format_keys(rows: list[dict[str, Any]]) -> str:
    """One block per key: ``key (type) = default`` then the description (and methods, for method options)."""
    lines = []
    for r in rows:
        where = f" [methods: {', '.join(r['methods'])}]" if r.get("methods") and r["methods"] != ["all"] else ""
        lines.append(f"{r['key']} ({r['type']}) = {r['default']!r}{where}")
        if r["description"]:
            lines.append(f"    {r['description']}")
    return "\n".join(lines)
