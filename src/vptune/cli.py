"""The ``vptune`` command line: a thin layer that builds configs and calls library functions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import __version__
from .errors import VptuneError

# CLI flag -> dotted config key (every flag is also settable from YAML or --set KEY=VALUE)
TRAIN_FLAGS = {
    "model": "model.name",
    "weights": "model.weights",
    "img_size": "model.img_size",
    "data": "data.spec",
    "method": "method.name",
    "prompt_length": "method.prompt_length",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "optim.lr",
    "wd": "optim.weight_decay",
    "optimizer": "optim.optimizer",
    "seed": "train.seed",
    "device": "train.device",
    "out": "out",
}


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print JSON (machine-readable) or a human-readable text."""
    print(json.dumps(data, indent=2, default=str) if as_json or text is None else text)


def add_backbone_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="override the backbone name recorded in the task")
    p.add_argument("--weights", help="load the backbone from this local file")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (tests only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--trust-task-weights",
        action="store_true",
        help="open the backbone weights file task.json records (off: a task file never picks a file to read)",
    )


def backbone_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.model:
        out["model_name"] = args.model
    if args.weights:
        out["weights"] = args.weights
    if args.no_pretrained:
        out["pretrained"] = False
    if args.trust_task_weights:
        out["trust_task_weights"] = True
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .config import build_config
    from .engine.trainer import describe_run, fit, prepare

    flags = {key: getattr(args, name) for name, key in TRAIN_FLAGS.items()}
    if args.no_pretrained:
        flags["model.pretrained"] = False
    if args.skip_bad_images:
        flags["data.skip_bad_images"] = True
    if args.json or args.no_progress:
        flags["train.progress"] = False
    cfg = build_config(args.config, flags, args.set)
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
    from .engine.distributed import is_main_process

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


def cmd_eval(args: argparse.Namespace) -> int:
    from .predict import evaluate_task

    res = evaluate_task(
        args.task,
        args.data,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        skip_bad_images=args.skip_bad_images,
        progress=not args.json,
        **backbone_kwargs(args),
    )
    emit(res, args.json, f"{args.split} top1 {res['top1']:.4f} on {res['n']} images ({res['data']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import Predictor

    predictor = Predictor.from_dir(args.task, device=args.device, **backbone_kwargs(args))
    preds = predictor.predict(args.images, top_k=args.top_k)
    rows = [{"image": img, "predictions": p} for img, p in zip(args.images, preds)]
    text = "\n".join(
        f"{r['image']}: " + ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["predictions"]) for r in rows
    )
    emit(rows, args.json, text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .tasks import read_task

    info = read_task(args.task).summary()
    text = "\n".join(f"{k}: {v}" for k, v in info.items() if k not in ("classes", "preprocessing", "method_config"))
    emit(info, args.json, text)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .methods import METHODS

    rows = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        fields = {
            f: {"default": info.default, "help": info.description or ""}
            for f, info in cls.config_cls.model_fields.items()
            if f != "name"
        }
        rows.append({"name": name, "summary": cls.summary, "options": fields})
    text = "\n".join(
        f"{r['name']:<16} {r['summary']}\n"
        + "".join(f"    {k} = {v['default']!r}  {v['help']}\n" for k, v in r["options"].items())
        for r in rows
    )
    emit(rows, args.json, text.rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vptune", description="Visual Prompt Tuning for timm vision Transformers")
    parser.add_argument("--version", action="version", version=f"vptune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="adapt a backbone to a dataset and save a task artifact")
    p.add_argument("--model", help="timm model name, e.g. vit_base_patch16_224.orig_in21k")
    p.add_argument("--weights", help="local .safetensors/.pth/.npz backbone weights")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (tests)")
    p.add_argument("--data", help="folder:PATH | csv:FILE | offline:NAME | vtab1k:ROOT/TASK | fgvc:ROOT/NAME")
    p.add_argument("--method", help="adaptation method (see `vptune methods`)")
    p.add_argument("--prompt-length", type=int, help="prompt tokens per layer (VPT methods)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate (base lr with --set optim.scale_lr=true)")
    p.add_argument("--wd", type=float, help="weight decay")
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--img-size", type=int, help="input resolution")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--config", help="YAML file with model:, data:, method:, optim:, train:, out: sections")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
    p.add_argument("--skip-bad-images", action="store_true", help="skip and count unreadable images")
    p.add_argument("--out", help="output folder (resumes when it holds a checkpoint)")
    p.add_argument("--dry-run", action="store_true", help="build the model, print the parameter summary, stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy of a saved task on a data split")
    p.add_argument("task", help="task folder")
    p.add_argument("--data", required=True, help="data spec with the task's classes")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-bad-images", action="store_true")
    p.add_argument("--json", action="store_true")
    add_backbone_overrides(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes for image files")
    p.add_argument("task", help="task folder")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    add_backbone_overrides(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("inspect", help="describe a task artifact without loading weights")
    p.add_argument("task", help="task folder")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("methods", help="list adaptation methods with their options and defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)

    from .cli_extra import add_extra_commands

    add_extra_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vptune`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except VptuneError as err:
        print(f"vptune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vptune {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
