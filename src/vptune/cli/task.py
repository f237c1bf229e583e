"""``vptune eval``, ``predict`` and ``inspect``: use a saved task artifact."""

from __future__ import annotations

import argparse

from .common import add_backbone_overrides, add_json, backbone_kwargs, emit


def cmd_eval(args: argparse.Namespace) -> int:
    from ..predict import evaluate_task

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
    from ..predict import Predictor

    predictor = Predictor.from_dir(args.task, device=args.device, **backbone_kwargs(args))
    preds = predictor.predict(args.images, top_k=args.top_k)
    rows = [{"image": img, "predictions": p} for img, p in zip(args.images, preds)]
    text = "\n".join(
        f"{r['image']}: " + ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["predictions"]) for r in rows
    )
    emit(rows, args.json, text)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..tasks import read_task

    info = read_task(args.task).summary()
    text = "\n".join(f"{k}: {v}" for k, v in info.items() if k not in ("classes", "preprocessing", "method_config"))
    emit(info, args.json, text)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``eval``, ``predict`` and ``inspect``."""
    p = sub.add_parser("eval", help="accuracy of a saved task on a data split")
    p.add_argument("task", help="task folder")
    p.add_argument("--data", required=True, help="data spec with the task's classes")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip and count unreadable images")
    add_json(p)
    add_backbone_overrides(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k classes for image files")
    p.add_argument("task", help="task folder")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default: 5)")
    add_json(p)
    add_backbone_overrides(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("inspect", help="describe a task artifact without loading weights")
    p.add_argument("task", help="task folder")
    add_json(p)
    p.set_defaults(func=cmd_inspect)
