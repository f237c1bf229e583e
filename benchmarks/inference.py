"""Inference latency vs prompt length for vpt-deep and vpt-prefix (eval mode, no gradients).

All configurations live in one process and are timed round-robin (one forward each per round), so a change
in machine load hits them alike; the median per configuration is reported with its ratio to p=0 (the plain
backbone). CPU time (all threads) is reported too: under load from other processes it is the fairer figure.

Examples::

    python benchmarks/inference.py                                   # ViT-B/16, 224px, batch 1, p 0..200
    python benchmarks/inference.py --batch 4 --prompt-lengths 0,50,200 --reps 5
    python benchmarks/inference.py --quick                           # vit_tiny, 3 reps
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from vptune.model import build_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--prompt-lengths", default="0,10,50,100,200")
    ap.add_argument("--methods", default="vpt-deep,vpt-prefix")
    ap.add_argument("--reps", type=int, default=5, help="timed forwards per configuration (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="vit_tiny_patch16_224, 3 reps")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.reps = "vit_tiny_patch16_224", 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lengths = [int(p) for p in args.prompt_lengths.split(",")]
    models = {}
    for method in args.methods.split(","):
        for p in lengths:
            torch.manual_seed(0)
            cfg = {"name": method, "prompt_length": p, "dropout": 0.0}
            model = build_model(args.model, cfg, 100, pretrained=False, img_size=args.img_size)
            models[(method, p)] = model.to(device).eval()
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=device)
    wall: dict[tuple[str, int], list[float]] = {k: [] for k in models}
    cpu: dict[tuple[str, int], list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for r in range(args.warmup + args.reps):
            for key, model in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t, c = time.perf_counter(), time.process_time()
                model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r >= args.warmup:
                    wall[key].append(time.perf_counter() - t)
                    cpu[key].append(time.process_time() - c)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.model}, {args.img_size}px, batch {args.batch}, fp32, {device} ({torch.get_num_threads()} threads, "
        f"load {load:.1f}); median of {args.reps} forwards after {args.warmup} warmup, round-robin"
    )
    print(f"{'method':<12}{'p':>5}{'wall ms':>10}{'x p=0':>8}{'cpu ms':>10}{'x p=0':>8}")
    rows = []
    for (method, p), times in wall.items():
        base = (method, lengths[0])
        w, c = statistics.median(times), statistics.median(cpu[(method, p)])
        w0, c0 = statistics.median(wall[base]), statistics.median(cpu[base])
        rows.append({"method": method, "p": p, "wall_s": w, "cpu_s": c, "wall_ratio": w / w0, "cpu_ratio": c / c0})
        print(f"{method:<12}{p:>5}{w * 1e3:>10.1f}{w / w0:>8.2f}{c * 1e3:>10.1f}{c / c0:>8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
