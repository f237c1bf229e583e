"""``vptune serve``'s flags, derived from :class:`ServeConfig` (help texts are the fields' descriptions), and the
one library call the command makes: :func:`serve_from_args`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError, VptuneError
from .config import ADMIN_KEY_ENV, KEY_ENV, MiB, ServeConfig, read_key

# flag -> (ServeConfig field, type, scale applied to the flag's value)
LIMIT_FLAGS: dict[str, tuple[str, type, int]] = {
    "--max-batch": ("max_batch", int, 1),
    "--max-wait-ms": ("max_wait_ms", float, 1),
    "--max-queue": ("max_queue", int, 1),
    "--max-files": ("max_files", int, 1),
    "--max-image-mb": ("max_image_bytes", float, MiB),
    "--max-body-mb": ("max_body_bytes", float, MiB),
    "--max-pixels": ("max_pixels", int, 1),
    "--max-request-pixels": ("max_request_pixels", int, 1),
    "--max-decodes": ("max_decodes", int, 1),
    "--max-tasks": ("max_tasks", int, 1),
    "--max-isolated": ("max_isolated", int, 1),
}


def _help(field: str, scale: int = 1) -> str:
    info = ServeConfig.model_fields[field]
    default = info.default / scale if scale != 1 else info.default
    unit = " (MiB)" if scale == MiB else ""
    return (
        f"{info.description}{unit}; default {default:g}"
        if isinstance(default, float)
        else (f"{info.description}{unit}; default {default}")
    )


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of :class:`ServeConfig` (keys, limits, task management, hosts) to ``vptune serve``.

    The command itself declares ``--task``, ``--host``, ``--port`` and the backbone overrides.
    """
    p.add_argument("--api-key-file", metavar="FILE", help=f"file (chmod 600) holding the API key; or set {KEY_ENV}")
    p.add_argument(
        "--admin-key-file",
        metavar="FILE",
        help=f"file (chmod 600) holding the admin key that enables POST/DELETE /v1/tasks; or set {ADMIN_KEY_ENV}",
    )
    p.add_argument("--api-key", help=argparse.SUPPRESS)  # refused: argv is visible to every local user
    p.add_argument("--task-root", metavar="DIR", help=ServeConfig.model_fields["task_root"].description)
    p.add_argument(
        "--trusted-host",
        action="append",
        metavar="NAME",
        help="Host header value clients use (repeatable; loopback names are always accepted; '*': any)",
    )
    p.add_argument(
        "--formats", help=f"comma-separated Pillow formats accepted; default {','.join(_default('formats'))}"
    )
    p.add_argument("--docs", action="store_true", help=ServeConfig.model_fields["docs"].description)
    p.add_argument("--plan", choices=("auto", "padded", "buckets", "per-task", "varlen"), help=_help("plan"))
    for flag, (field, kind, scale) in LIMIT_FLAGS.items():
        p.add_argument(flag, type=kind, help=_help(field, scale))


def _default(field: str) -> Any:
    return ServeConfig.model_fields[field].default


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the flags describe (keys read from their files or the environment)."""
    if args.api_key:
        raise ConfigError(
            f"--api-key is not accepted (the process list shows it to every local user): put the key in a file "
            f"readable only by you and pass --api-key-file FILE, or set {KEY_ENV}"
        )
    fields: dict[str, Any] = {
        "api_key": read_key(args.api_key_file, KEY_ENV),
        "admin_key": read_key(args.admin_key_file, ADMIN_KEY_ENV),
        "task_root": args.task_root,
        "docs": args.docs,
    }
    if getattr(args, "plan", None):
        fields["plan"] = args.plan
    if args.trusted_host:
        fields["trusted_hosts"] = (*_default("trusted_hosts"), *args.trusted_host)
    if args.formats:
        fields["formats"] = tuple(f.strip().upper() for f in args.formats.split(",") if f.strip())
    for flag, (field, kind, scale) in LIMIT_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            fields[field] = kind(value * scale) if scale != 1 else value
    return ServeConfig(**fields)


def serve_from_args(args: argparse.Namespace, tasks: dict[str, str], backbone: dict[str, Any]) -> int:
    """``vptune serve``: check the settings and the bind address, load the tasks, run uvicorn.

    Args:
        args: The parsed flags (:func:`add_serve_arguments`' plus ``host``, ``port`` and ``device``).
        tasks: ``{name: task folder}``.
        backbone: ``model_name``/``weights``/``pretrained`` overrides for the bank.
    """
    try:
        import uvicorn

        from .app import create_app
    except ImportError as err:
        raise VptuneError(f"vptune serve needs {err.name}: pip install 'vptune[serve]'") from None
    from ..engine.device import resolve_device
    from ..tasks.multitask import MultiTaskModel

    config = config_from_args(args)
    config.check_bind(args.host)
    bank = MultiTaskModel.from_dirs(tasks, device=resolve_device(args.device), plan=config.plan, **backbone)
    if config.plan == "auto":  # measure the planner's cost model now, not in the first request
        cost = bank.calibrate()
        terms = " ".join(f"{k}={v:.3g}" for k, v in cost.coefficients().items())
        print(
            f"vptune serve: planner cost model {terms} (a, b, c in s; recurring batch compositions are raced)",
            file=sys.stderr,
        )
    if config.admin_key is not None:
        print(f"vptune serve: task management on (POST/DELETE /v1/tasks under {config.task_root})", file=sys.stderr)
    uvicorn.run(create_app(bank, config), host=args.host, port=args.port, log_level="info")
    return 0
