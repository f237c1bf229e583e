"""HTTP serving of many tasks on one backbone: ``vptune serve`` (needs ``pip install vptune[serve]``)."""

try:  # the one optional extra of vptune: fail with the extra's name, not a bare ModuleNotFoundError
    import fastapi  # noqa: F401
except ModuleNotFoundError as err:  # pragma: no cover - the dev install has it
    from ..errors import VptuneError

    raise VptuneError(f"vptune.serve needs {err.name}: pip install 'vptune[serve]'") from None
