"""``vptune tune``: hyper-parameter search on Optuna (see :mod:`vptune.tune`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator

from .common import Interrupted, add_json
from .flags import add_config_file_flags, add_config_flags, config_from_args, run_flags

# the train command's flags, less those the search itself sets (lr, wd) or declares with its own meaning (out)
TUNE_FLAGS = run_flags(without=("optim.lr", "optim.weight_decay", "out"))


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _lengths(text: str) -> list[int]:
    from ..tune import PAPER_PROMPT_LENGTHS

    if text == "paper":
        return list(PAPER_PROMPT_LENGTHS)
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'paper' or comma-separated integers, got '{text}'") from None


class _DropInterruptedTrial(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C with its traceback; the command prints one line instead."""

    interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted = True
            return False
        return not (self.interrupted and "failed with value" in record.getMessage())


@contextlib.contextmanager
def quiet_interrupted_trials() -> Iterator[None]:
    logger, drop = logging.getLogger("optuna.study._optimize"), _DropInterruptedTrial()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _option_values(text: str) -> tuple[str, list]:
    """``method.reduction=8,64,256`` -> ("reduction", [8, 64, 256]) (YAML scalars: numbers, booleans, words)."""
    import yaml

    key, sep, values = text.partition("=")
    if not sep or not key.startswith("method.") or not values:
        raise argparse.ArgumentTypeError(f"expected method.KEY=V1,V2,..., got '{text}'")
    return key.removeprefix("method."), [yaml.safe_load(v) for v in values.split(",")]


def cmd_tune(args: argparse.Namespace) -> int:
    from ..errors import VptuneError
    from ..tune import TuneOptions, tune

    cfg = config_from_args(args, TUNE_FLAGS, {"out": args.out})
    if not cfg.data.spec:
        raise VptuneError("no data given: pass --data SPEC (e.g. vtab1k:ROOT/TASK, offline:digits)")
    if cfg.model.pretrained and not cfg.model.weights:  # before the study: Optuna would log a trial traceback
        from ..backbones.hub import local_pretrained_file

        local_pretrained_file(cfg.model.name)
    opts = TuneOptions(
        grid=args.grid,
        lrs=args.lrs,
        weight_decays=args.wds,
        prompt_lengths=args.prompt_lengths,
        options=dict(args.search) or None,
        sampler=args.sampler,
        prune=args.prune,
        storage=args.storage,
        study_name=args.study_name,
        trials=args.trials,
        progress=not args.json,
    )
    try:
        with quiet_interrupted_trials():
            best = tune(cfg, args.out, opts)
    except KeyboardInterrupt:
        raise Interrupted(
            f"finished trials are kept in {opts.storage or args.out + '/study.db'}; run the same command again to "
            "continue the search"
        ) from None
    if args.json:
        print(json.dumps({k: v for k, v in best.items() if k != "all_trials"}, indent=2))
    else:
        o = best["optim"]
        searched = set(best["study"]["search_space"]) - {"lr", "weight_decay"}
        extra = "".join(f", {k} {v}" for k, v in best["method_options"].items() if k in searched)
        print(
            f"best of {best['trials']} trials: lr {o['lr']:g}{' (scaled)' if o['scale_lr'] else ''}, weight decay "
            f"{o['weight_decay']:g}{extra}: val top1 {best['val_top1']:.4f}; wrote {args.out}/best.json",
            file=sys.stdout,
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``vptune tune`` on the main parser."""
    p = sub.add_parser(
        "tune",
        help="lr x weight-decay (x prompt length) search on Optuna; writes OUT/best.json",
        description="Each trial trains on data.train_split (train800 for VTAB-1k) and scores val top-1 at the last "
        "epoch on data.val_split (val200); ties go to the smaller lr, then the larger weight decay, then the shorter "
        "prompt (as vptune bench). Every lr is a base lr scaled by batch/256 for SGD and AdamW (optim.scale_lr, true "
        "by default, as train and bench). Re-running resumes; several machines can share one --storage.",
    )
    add_config_flags(p, TUNE_FLAGS)
    p.add_argument("--grid", choices=["paper", "small"], default="paper", help="paper: 10x4 (SGD) / 4x4 (AdamW)")
    p.add_argument("--lrs", type=_floats, help="comma-separated learning rates instead of the grid's")
    p.add_argument("--wds", type=_floats, help="comma-separated weight decays instead of the grid's")
    p.add_argument(
        "--prompt-lengths", type=_lengths, help="also search prompt length: comma-separated, or 'paper' (1..200)"
    )
    p.add_argument(
        "--search",
        type=_option_values,
        action="append",
        default=[],
        metavar="method.KEY=V1,V2",
        help="also search a method option, e.g. --search method.reduction=8,64,256 (adapter); repeatable",
    )
    p.add_argument("--sampler", choices=["grid", "tpe"], default="grid", help="tpe needs --trials")
    p.add_argument("--prune", action="store_true", help="successive-halving pruning on per-epoch val top-1")
    p.add_argument("--storage", help="Optuna database URL (default sqlite:///OUT/study.db)")
    p.add_argument("--study-name", help="default: TASK-METHOD")
    p.add_argument("--trials", type=int, help="start at most N trials now (default: every remaining grid point)")
    add_config_file_flags(p)
    p.add_argument("--out", required=True, help="folder for study.db, trials/ and best.json")
    add_json(p, "print best.json (without the trial list)")
    p.set_defaults(func=cmd_tune)
