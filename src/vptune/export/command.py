"""``vptune export DIR --format onnx|torchscript --out FILE``: the command line over :func:`export_task`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .check import ATOL

FORMAT_CHOICES = ("onnx", "torchscript")  # kept in step with the registry by tests/test_export.py

HELP = "export a task as one ONNX or TorchScript file (backbone + method + head), checked against PyTorch"
DESCRIPTION = """\
Export a task folder as one self-contained model file that maps preprocessed images (batch, 3, H, W) to logits
(batch, classes), batch size dynamic. LoRA updates are merged. Class names and preprocessing are stored in the
file's metadata and in FILE.json beside it. By default the written file is run on real images (the task's own
test data, else the bundled digits) through the task's preprocessing and must match PyTorch's logits within
--atol; otherwise nothing is written. ONNX needs: pip install 'vptune[export]'. See docs/deploy.md."""


def add_export_command(sub: Any) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse sub-parser collection; the handler is :func:`cmd_export`."""
    p = sub.add_parser("export", help=HELP, description=DESCRIPTION)
    p.add_argument("task", metavar="DIR", help="task folder (task.json + task.safetensors)")
    p.add_argument("--format", choices=FORMAT_CHOICES, default="onnx", help="file format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write, e.g. model.onnx or model.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE and FILE.json")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime/TorchScript check (not advised)")
    p.add_argument("--check-images", nargs="+", metavar="IMAGE", help="image files for the check")
    p.add_argument("--atol", type=float, default=ATOL, help=f"largest allowed |logit difference| (default {ATOL:g})")
    p.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="ONNX exporter: auto tries torch.onnx's dynamo exporter, then the TorchScript-based one",
    )
    p.add_argument("--model", help="override the backbone name recorded in the task")
    p.add_argument("--weights", help="load the backbone from this local file")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone weights (tests only)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``vptune export`` and print what was written."""
    from .api import export_task

    backbone: dict[str, Any] = {}
    if args.model:
        backbone["model_name"] = args.model
    if args.weights:
        backbone["weights"] = args.weights
    if args.no_pretrained:
        backbone["pretrained"] = False
    result = export_task(
        args.task,
        args.format,
        args.out,
        check=not args.no_check,
        overwrite=args.overwrite,
        images=args.check_images,
        atol=args.atol,
        exporter=args.exporter,
        **backbone,
    )
    info = result.summary()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    check = result.check
    verdict = (
        f"check passed: max |logit diff| {check['max_abs_diff']:.2e} <= {check['atol']:g} on {check['images']} "
        f"images from {check['source']}"
        if check
        else "check skipped (--no-check)"
    )
    print(f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB, {info['exporter']}) and {info['metadata']}")
    print(verdict)
    return 0
