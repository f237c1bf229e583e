"""Adaptation methods behind one interface; importing this package registers them all."""

from . import adapter, bias, full, linear, lora, mlp, pad_prompt, partial, prefix, prompt, sidetune  # noqa: F401  (registration side effect)
from .base import METHODS, Method, MethodConfig, build_method, get_method, method_names, parse_method_config

__all__ = [
    "METHODS",
    "Method",
    "MethodConfig",
    "build_method",
    "get_method",
    "method_names",
    "parse_method_config",
]
