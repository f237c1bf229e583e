"""The curated public API of ``import vptune``: pinned, so that a change to it is a deliberate one."""

from __future__ import annotations

import subprocess
import sys

import vptune

PUBLIC = {
    "__version__",
    "AdaptedModel",
    "build_model",
    "Backbone",
    "wrap_backbone",
    "create_vit",
    "Method",
    "MethodConfig",
    "METHODS",
    "build_method",
    "get_method",
    "method_names",
    "register_method",
    "RunConfig",
    "build_config",
    "fit",
    "TrainResult",
    "TaskArtifact",
    "load_task",
    "read_task",
    "save_task",
    "Predictor",
    "evaluate_task",
    "MultiTaskModel",
    "load_ensemble",
    "PromptEnsemble",
    "VptuneError",
    "ConfigError",
    "DataError",
    "ArtifactError",
}


def test_public_surface_is_pinned():
    assert set(vptune.__all__) == PUBLIC
    assert len(vptune.__all__) == len(PUBLIC)  # no name listed twice


def test_every_public_name_resolves_to_its_object():
    from vptune.engine.trainer import fit
    from vptune.methods import METHODS
    from vptune.tasks.multitask import MultiTaskModel

    for name in PUBLIC:
        assert getattr(vptune, name) is not None, name
    assert vptune.fit is fit and vptune.MultiTaskModel is MultiTaskModel and vptune.METHODS is METHODS
    assert "vpt-deep" in vptune.method_names()


def test_unknown_attribute_is_an_attribute_error():
    try:
        vptune.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("vptune.no_such_name did not raise")


def test_import_is_lazy():
    """``import vptune`` alone loads neither torch nor timm (the CLI's --help stays fast)."""
    code = "import sys, vptune; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_build_config_from_dotted_flags():
    cfg = vptune.build_config(
        flags={"model.name": "vptune_micro_vit", "data.spec": "offline:digits", "method.name": "linear"},
    )
    assert isinstance(cfg, vptune.RunConfig) and cfg.method.name == "linear"


def test_missing_serve_extra_names_the_extra():
    """The one optional extra (serve) fails with a VptuneError naming it, not a bare ModuleNotFoundError."""
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "from vptune.errors import VptuneError\n"
        "try:\n    import vptune.serve\nexcept VptuneError as err:\n    print(err)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "vptune.serve needs fastapi: pip install 'vptune[serve]'" in out
