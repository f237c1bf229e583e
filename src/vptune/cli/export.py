"""``vptune export DIR --format onnx|torchscript --out FILE``: the command line over :func:`export_task`."""

from __future__ import annotations

import argparse

from .common import add_backbone_overrides, add_json, backbone_kwargs, emit

# kept in step with vptune.export (imported only when the command runs) by tests/test_export.py
FORMAT_CHOICES = ("onnx", "torchscript")
EXPORTER_CHOICES = ("auto", "dynamo", "torchscript")
DEFAULT_ATOL = 1e-4

HELP = "export a task as one ONNX or TorchScript file (backbone + method + head), checked against PyTorch"
DESCRIPTION = """\
Export a task folder as one self-contained model file that maps preprocessed images (batch, 3, H, W) to logits
(batch, classes), batch size dynamic. LoRA updates are merged. Class names and preprocessing are stored in the
file's metadata and in FILE.json beside it. By default the written file is run on real images (the task's own
test data, else the bundled digits) through the task's preprocessing and must match PyTorch's logits within
--atol; otherwise nothing is written. ONNX needs: pip install 'vptune[export]'. See docs/deploy.md."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``export``."""
    p = sub.add_parser("export", help=HELP, description=DESCRIPTION)
    p.add_argument("task", metavar="DIR", help="task folder (task.json + task.safetensors)")
    p.add_argument("--format", choices=FORMAT_CHOICES, default="onnx", help="file format (default: onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write, e.g. model.onnx or model.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE and FILE.json")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the written file on real images and compare its logits with PyTorch's (default: on; --no-check "
        "skips it, not advised)",
    )
    p.add_argument("--check-images", nargs="+", metavar="IMAGE", help="image files for the check")
    atol_help = f"largest allowed |logit difference| (default {DEFAULT_ATOL:g})"
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=atol_help)
    p.add_argument(
        "--exporter",
        choices=EXPORTER_CHOICES,
        default="auto",
        help="ONNX exporter: auto tries torch.onnx's dynamo exporter, then the TorchScript-based one",
    )
    add_backbone_overrides(p, device=False)  # export and check run on the CPU
    add_json(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``vptune export`` and print what was written."""
    from ..export import export_task

    result = export_task(
        args.task,
        args.format,
        args.out,
        check=args.check,
        overwrite=args.overwrite,
        images=args.check_images,
        atol=args.atol,
        exporter=args.exporter,
        **backbone_kwargs(args),
    )
    info = result.summary()
    check = result.check
    verdict = (
        f"check passed: max |logit diff| {check['max_abs_diff']:.2e} <= {check['atol']:g} on {check['images']} "
        f"images from {check['source']}"
        if check
        else "check skipped (--no-check)"
    )
    text = f"wrote {info['path']} ({info['bytes'] / 1e6:.1f} MB, {info['exporter']}) and {info['metadata']}\n{verdict}"
    emit(info, args.json, text)
    return 0
