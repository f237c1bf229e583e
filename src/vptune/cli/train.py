"""``vptune train``: adapt a backbone to a dataset and save a task artifact."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError, VptuneError
from ..unset import UNSET
from .common import Interrupted, add_json, emit
from .flags import RUN_FLAGS, add_config_file_flags, add_config_flags, config_from_args


def from_best(path: str, method: Any) -> dict[str, Any]:
    """Config keys from tune's ``best.json``: its method, optimiser settings and searched method options."""
    from ..config import parse_override
    from ..tune import best_overrides, load_best

    best = load_best(path)
    if method not in (UNSET, best["method"]):
        raise ConfigError(f"--from-best: '{path}' was tuned for method {best['method']}, not {method}")
    return {"method.name": best["method"], **dict(parse_override(item) for item in best_overrides(best))}


def cmd_train(args: argparse.Namespace) -> int:
    from ..engine.checkpoint import CHECKPOINT_FILE
    from ..engine.trainer import describe_run, fit, prepare
    from ..run_folder import check_run_folder

    cfg = config_from_args(args, RUN_FLAGS, base=from_best(args.from_best, args.method) if args.from_best else None)
    if not cfg.data.spec:
        raise VptuneError("no data given: pass --data SPEC (e.g. folder:PATH, csv:FILE, offline:digits)")
    if args.dry_run:  # parameter counts do not depend on the weights: build without loading (or downloading) any
        model, data, pre = prepare(cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False})}))
        n_train = len(data.split(cfg.data.train_split))
        info = {
            **describe_run(model, data, cfg, n_train),
            "splits": {k: len(v) for k, v in data.splits.items()},
            "preprocessing": pre,
            "config": cfg.to_dict(),
        }
        emit(info, args.json, "\n".join(f"{k}: {v}" for k, v in info.items() if k != "config"))
        return 0
    folder = check_run_folder(cfg.to_dict(), overwrite=args.overwrite)
    if folder.kind == "done":
        top1 = ", ".join(f"{k} {v:.4f}" for k, v in folder.metrics.items() if k.endswith("top1"))
        emit(
            {"out": str(folder.path), "metrics": folder.metrics, "skipped": True},
            args.json,
            f"'{folder.path}' already holds this finished run ({top1}); nothing to do (--overwrite trains it again)",
        )
        return 0
    try:
        result = fit(cfg)
    except KeyboardInterrupt:
        if (folder.path / CHECKPOINT_FILE).is_file():
            raise  # main: "run the same command again to resume"
        raise Interrupted("stopped before the first checkpoint: nothing was saved; run the command again") from None
    from ..engine.distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 reports
        return 0
    out = {"out": str(result.out_dir), "metrics": result.metrics, **result.summary}
    skipped = f"; skipped {result.metrics['skipped_images']} unreadable images" if cfg.data.skip_bad_images else ""
    emit(
        out,
        args.json,
        f"saved task to {result.out_dir}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.endswith("top1"))
        + skipped,
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune train``."""
    p = sub.add_parser("train", help="adapt a backbone to a dataset and save a task artifact")
    add_config_flags(p, RUN_FLAGS)
    add_config_file_flags(p)
    p.add_argument(
        "--from-best",
        metavar="FILE",
        help="start from `vptune tune`'s best.json (or its folder): method, lr, weight decay, searched options; "
        "flags and --set still win",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished task in --out (refused otherwise)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build the model with random weights (nothing downloads), print the parameter summary, stop",
    )
    add_json(p)
    p.set_defaults(func=cmd_train)
