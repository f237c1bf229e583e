"""``vptune eval``, ``predict`` and ``inspect``: use a saved task artifact."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import VptuneError
from .common import add_backbone_overrides, add_json, add_trust_task_weights, backbone_kwargs, emit

SEG_MODE_HELP = "segmentation tasks: slide (single scale, sliding window) or multiscale (scales 0.5-1.75 + flip)"


def data_spec_of(task: str) -> str:
    """The data spec a task was trained on (``task.json``), for ``eval`` without ``--data``."""
    from ..tasks import read_task

    spec = (read_task(task).meta.get("train_config") or {}).get("data", {}).get("spec")
    if not spec:
        raise VptuneError(f"task '{task}' records no data spec (trained before vptune 0.1?); pass --data SPEC")
    return spec


def cmd_eval(args: argparse.Namespace) -> int:
    from ..predict import evaluate_task

    spec = args.data or data_spec_of(args.task)
    res = evaluate_task(
        args.task,
        spec,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        skip_bad_images=args.skip_bad_images,
        progress=not args.json,
        mode=args.mode,
        **backbone_kwargs(args),
    )
    skipped = f"; skipped {res['skipped']} unreadable images" if args.skip_bad_images else ""
    if "miou" in res:  # a segmentation task (docs/segmentation.md)
        text = f"{args.split} mIoU {res['miou']:.4f}, pixel acc {res['pixel_acc']:.4f} ({res['mode']})"
        text += f" on {res['n']} images"
        emit(res, args.json, f"{text} ({res['data']}){skipped}")
        return 0
    emit(res, args.json, f"{args.split} top1 {res['top1']:.4f} on {res['n']} images ({res['data']}){skipped}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..image_inputs import expand_images, predict_files, write_csv
    from ..predict import Predictor

    if args.csv and Path(args.csv).exists() and not args.overwrite:
        raise VptuneError(f"--csv '{args.csv}' exists; pass --overwrite to replace it, or choose another file")
    paths = expand_images(args.images)
    predictor = Predictor.from_dir(args.task, device=args.device, **backbone_kwargs(args))
    if predictor.task.task_type == "segmentation":  # colour + raw label PNGs per image (docs/segmentation.md)
        from ..seg.predict import write_masks

        rows = write_masks(predictor, paths, args.out_dir, mode=args.mode, overwrite=args.overwrite)
        emit(rows, args.json, f"wrote {len(rows)} masks (colour *_mask.png, raw *_labels.png) to {args.out_dir}")
        return 0
    rows = list(
        predict_files(
            predictor, paths, top_k=args.top_k, batch_size=args.batch_size, skip_bad_images=args.skip_bad_images
        )
    )
    skipped = [r for r in rows if "error" in r]
    if args.csv:
        write_csv(rows, args.csv)
    text = "\n".join(
        f"{r['image']}: " + ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["predictions"])
        for r in rows
        if "predictions" in r
    )
    if args.csv:
        text = f"wrote {len(rows) - len(skipped)} predictions to {args.csv}"
    if args.skip_bad_images:
        text += f"\nskipped {len(skipped)} unreadable images"
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
    p.add_argument("--data", help="data spec with the task's classes (default: the one the task was trained on)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and report how many")
    p.add_argument("--mode", choices=["slide", "multiscale"], default="slide", help=SEG_MODE_HELP)
    add_json(p)
    add_backbone_overrides(p)
    add_trust_task_weights(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "predict",
        help="top-k classes for image files, folders or glob patterns",
        description="IMAGES are files, folders (searched recursively for image files) or quoted glob patterns "
        "such as 'photos/**/*.jpg'.",
    )
    p.add_argument("task", help="task folder")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (default: 5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--csv", help="also write image,label_1,score_1,... rows to this CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file (or mask files)")
    p.add_argument("--out-dir", default="masks", help="segmentation tasks: folder for the mask PNGs (default: masks)")
    p.add_argument("--mode", choices=["slide", "multiscale"], default="slide", help=SEG_MODE_HELP)
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images and report how many")
    add_json(p)
    add_backbone_overrides(p)
    add_trust_task_weights(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("inspect", help="describe a task artifact without loading weights")
    p.add_argument("task", help="task folder")
    add_json(p)
    p.set_defaults(func=cmd_inspect)
