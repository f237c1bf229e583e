"""The explicit "not given" marker for config values (``None`` is a value, e.g. no validation split)."""

from __future__ import annotations

from typing import Any


class _Unset:
    """The type of :data:`UNSET`."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        cls._instance = cls._instance or super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()
"""A flag the user did not give: :func:`build_config` skips it (``None`` is a value: e.g. no val split)."""
