"""Mixed-task batches on one backbone vs the alternatives, measured side by side in one run.

    .venv/bin/python benchmarks/multitask.py                      # micro ViT, CPU or GPU
    .venv/bin/python benchmarks/multitask.py --model vit_base_patch16_224 --batch 64 --device cuda

Compares, on the same images (random backbone weights: speed and memory do not depend on them):
  mixed       one MultiTaskModel pass over a batch mixing T vpt-deep tasks (prompt lengths spread 1..max)
  single      the longest-prompt task's own AdaptedModel on a batch of the same size (one task, no padding)
  sub-batch   each task's own AdaptedModel on its share of the batch, one task after the other
  full/task   one full model per task: memory counted (T backbones + T task tensors), compute = sub-batch
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vptune.backbones import create_vit, describe, weights_hash
from vptune.engine.device import resolve_device
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.tasks import read_task, save_task
from vptune.tasks.artifact import attach_task
from vptune.tasks.multitask import MultiTaskModel


def throughput(fn: Callable[[], object], images: int, device: torch.device, min_seconds: float) -> float:
    """Images per second of ``fn`` (after two warm-up calls), timed over at least ``min_seconds``."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        fn()
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            return runs * images / elapsed


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def make_tasks(args: argparse.Namespace, vit: torch.nn.Module, root: Path) -> list[tuple[str, Path, int]]:
    """Save ``args.tasks`` vpt-deep artifacts with prompt lengths spread over 1..``args.max_len``."""
    info, digest = describe(args.model, vit), weights_hash(vit)
    size = int(vit.patch_embed.img_size[0])
    pre = {"input_size": [size, size], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    src = {"pretrained": False, "weights": None, "img_size": None}
    lengths = np.linspace(1, args.max_len, args.tasks).round().astype(int).tolist()
    out = []
    for i, p in enumerate(lengths):
        method = build_method({"name": "vpt-deep", "prompt_length": p}, info)
        model = AdaptedModel(vit, info, method, 10 + i, backbone_hash=digest)
        path = root / f"t{i}"
        classes = [str(c) for c in range(10 + i)]
        save_task(path, model, classes=classes, preprocessing={**pre, "augment": "none"}, backbone_source=src)
        out.append((f"t{i}", path, p))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vptune_micro_vit", help="timm ViT name (random weights)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=50, help="longest prompt length")
    parser.add_argument("--batch", type=int, default=64, help="images per batch (a multiple of --tasks)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all variants, interleaved (median kept)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vit = create_vit(args.model, pretrained=False).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        specs = make_tasks(args, vit, Path(tmp))
        bank = MultiTaskModel(vit, model_name=args.model, device=device)
        own = {}
        for name, path, _ in specs:
            bank.add_task(name, path)
            own[name] = attach_task(read_task(path), vit, bank.digest).to(device).eval()  # the task's own model
    size = vit.patch_embed.img_size
    images = torch.randn(args.batch, 3, *size, device=device)  # (B, 3, H, W)
    names = [specs[i % len(specs)][0] for i in range(args.batch)]  # tasks interleaved
    longest = max(specs, key=lambda s: s[2])[0]
    shares = {name: images[[i for i, n in enumerate(names) if n == name]] for name, _, _ in specs}

    with torch.inference_mode():
        variants = {
            "mixed": lambda: bank(images, names),
            "single": lambda: own[longest](images),
            "single-bank": lambda: bank(images, [longest] * args.batch),
            "sub-batch": lambda: [own[n](x) for n, x in shares.items()],
        }
        rounds: dict[str, list[float]] = {key: [] for key in variants}
        for r in range(args.rounds):  # interleaved rounds: a busy machine slows every variant alike
            for key, fn in variants.items():
                rounds[key].append(throughput(fn, args.batch, device, args.seconds))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rounds.items()), flush=True)
        results = {key: float(np.median(v)) for key, v in rounds.items()}
        mixed_out = bank(images[:8], names[:8])
        ref = [own[n](images[i : i + 1])[0] for i, n in enumerate(names[:8])]
        max_diff = max(float((a - b).abs().max()) for a, b in zip(mixed_out, ref))

    mem = bank.memory_bytes()
    backbone = tensor_bytes(vit)
    task_bytes = [tensor_bytes(own[n].method) + tensor_bytes(own[n].head) for n in own]
    full_per_task = len(specs) * backbone + sum(task_bytes)
    report = {
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "prompt_lengths": [p for _, _, p in specs],
        "images_per_s": {k: round(v, 1) for k, v in results.items()},
        "mixed_vs_single_longest": round(results["mixed"] / results["single"], 3),
        "mixed_vs_sub_batches": round(results["mixed"] / results["sub-batch"], 3),
        "bank_bytes": mem["total"],
        "backbone_bytes": backbone,
        "bank_vs_one_backbone": round(mem["total"] / backbone, 4),
        "full_model_per_task_bytes": full_per_task,
        "full_per_task_vs_bank": round(full_per_task / mem["total"], 2),
        "max_abs_diff_mixed_vs_own": max_diff,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
