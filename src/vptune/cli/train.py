"""``vptune train``: adapt a backbone to a dataset and save a task artifact."""

from __future__ import annotations

import argparse

from ..errors import VptuneError
from .common import add_json, emit
from .flags import RUN_FLAGS, add_config_file_flags, add_config_flags, config_from_args


def cmd_train(args: argparse.Namespace) -> int:
    from ..engine.trainer import describe_run, fit, prepare

    cfg = config_from_args(args, RUN_FLAGS)
    if not cfg.data.spec:
        raise VptuneError("no data given: pass --data SPEC (e.g. folder:PATH, csv:FILE, offline:digits)")
    if args.dry_run:
        model, data, pre = prepare(cfg)
        n_train = len(data.split(cfg.data.train_split))
        info = {
            **describe_run(model, data, cfg, n_train),
            "splits": {k: len(v) for k, v in data.splits.items()},
            "preprocessing": pre,
            "config": cfg.to_dict(),
        }
        emit(info, args.json, "\n".join(f"{k}: {v}" for k, v in info.items() if k != "config"))
        return 0
    result = fit(cfg)
    from ..engine.distributed import is_main_process

    if not is_main_process():  # under torchrun only rank 0 reports
        return 0
    out = {"out": str(result.out_dir), "metrics": result.metrics, **result.summary}
    emit(
        out,
        args.json,
        f"saved task to {result.out_dir}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.endswith("top1")),
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune train``."""
    p = sub.add_parser("train", help="adapt a backbone to a dataset and save a task artifact")
    add_config_flags(p, RUN_FLAGS)
    add_config_file_flags(p)
    p.add_argument("--dry-run", action="store_true", help="build the model, print the parameter summary, stop")
    add_json(p)
    p.set_defaults(func=cmd_train)
