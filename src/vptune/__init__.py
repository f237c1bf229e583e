"""vptune: Visual Prompt Tuning and parameter-efficient transfer for timm vision Transformers.

The public API (imported lazily, so ``import vptune`` and the CLI start fast)::

    from vptune import build_config, fit, load_task, Predictor

    cfg = build_config(flags={"model.name": "vptune_micro_vit", "data.spec": "offline:digits",
                              "method.name": "vpt-deep", "out": "runs/digits"})
    result = fit(cfg)                       # trains, tests, writes runs/digits/task.{json,safetensors}
    model, task = load_task("runs/digits")  # the AdaptedModel back, backbone hash checked
    Predictor(model, task).predict(["digit.png"])

Everything listed in ``__all__`` is covered by tests/test_public_api.py; other modules are internal.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # models and the backbone interface
    "AdaptedModel": ".model",
    "build_model": ".model",
    "Backbone": ".backbones",
    "wrap_backbone": ".backbones",
    "create_vit": ".backbones",
    # methods and their registry
    "Method": ".methods",
    "MethodConfig": ".methods",
    "METHODS": ".methods",
    "build_method": ".methods",
    "get_method": ".methods",
    "method_names": ".methods",
    "register_method": ".methods.base",
    # configuration and training
    "RunConfig": ".config",
    "build_config": ".config",
    "fit": ".engine.trainer",
    "TrainResult": ".engine.trainer",
    # tasks: artifacts, prediction, many tasks on one backbone, ensembles
    "TaskArtifact": ".tasks",
    "load_task": ".tasks",
    "read_task": ".tasks",
    "save_task": ".tasks",
    "Predictor": ".predict",
    "evaluate_task": ".predict",
    "MultiTaskModel": ".tasks.multitask",
    "load_ensemble": ".tasks.ensemble",
    "PromptEnsemble": ".tasks.ensemble",
    # errors a caller may catch
    "VptuneError": ".errors",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "ArtifactError": ".errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vptune' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # cache: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
