"""Training-step cost of each method vs full fine-tuning: step time, peak memory, FLOP/s.

All configurations are measured side by side in one invocation and reported as ratios to full fine-tuning:

* step time: every configuration is built in this process and they are stepped round-robin (one SGD step
  each per round; median after warmup), so changes in machine load hit them alike. Wall time and CPU time
  (all threads) are both reported; on a shared machine the CPU time is the fairer comparison.
* peak memory: each configuration runs two steps in a fresh subprocess; on CPU the figure is the peak
  resident set size (``ru_maxrss``) minus the resident size after imports, i.e. weights + gradients +
  optimiser state + activations (+ allocator slack); on CUDA it is ``torch.cuda.max_memory_allocated``.
* FLOPs per step, counted with ``torch.utils.flop_counter.FlopCounterMode`` in that subprocess, and the achieved
  FLOP/s against this machine's measured fp32 matrix-multiply rate (best of 5 multiplies of 2048 x 2048).

The last column counts frozen backbone tensors that received a gradient (0: autograd skipped every frozen
weight gradient, because those parameters have ``requires_grad=False``).

Examples::

    python benchmarks/train_step.py                          # ViT-B/16, 224px, batch 4, p in 10,50, CPU fp32
    python benchmarks/train_step.py --quick                  # vit_tiny, 2 timed steps: a few minutes
    python benchmarks/train_step.py --methods full,vpt-deep --prompt-lengths 50 --no-memory --steps 3
    python benchmarks/train_step.py --model vit_base_patch16_224 --batch 4 --prompt-lengths 50 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

METHODS = ("full", "linear", "vpt-shallow", "vpt-deep", "vpt-prefix")
PROMPTED = ("vpt-shallow", "vpt-deep", "vpt-prefix")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024)


def matmul_rate(device: str, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` fp32 FLOP/s of an n x n x n matrix multiply on ``device``."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps + 1):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def method_config(method: str, p: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {"name": method}
    if method in PROMPTED:
        cfg.update(prompt_length=p)
        if method != "vpt-shallow":
            cfg.update(dropout=0.0)
    return cfg


def build(spec: dict[str, Any]) -> tuple[Any, Callable[[], None], list[Any]]:
    """One configuration's model and a closure running one SGD training step; also the frozen parameters."""
    import torch

    from vptune.model import build_model

    device = spec["device"]
    torch.manual_seed(0)
    model = build_model(
        spec["model"], method_config(spec["method"], spec["p"]), 100, pretrained=False, img_size=spec["img_size"]
    )
    model.to(device).train()
    model.set_grad_checkpointing(spec["grad_checkpointing"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.backbone.parameters() if not p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9)
    x = torch.randn(spec["batch"], 3, spec["img_size"], spec["img_size"], device=device)
    y = torch.randint(0, 100, (spec["batch"],), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return model, step, frozen


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory and FLOPs of one configuration: two steps in a fresh process (the second one counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = spec["device"]
    base_rss = rss_bytes()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model, step, frozen = build(spec)
    step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else peak_rss_bytes() - base_rss
    return {
        "peak_bytes": peak,
        "flops": counter.get_total_flops(),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen_with_grad": sum(1 for p in frozen if p.grad is not None),  # autograd skipped their weight grads
    }


def time_round_robin(specs: list[dict[str, Any]], steps: int, warmup: int) -> list[dict[str, float]]:
    """Median wall and CPU time per step of every configuration, all built in this process and stepped in turn
    (one step each per round), so that changes in machine load affect them alike."""
    runs = [build(spec)[1] for spec in specs]
    wall: list[list[float]] = [[] for _ in specs]
    cpu: list[list[float]] = [[] for _ in specs]
    device = specs[0]["device"]
    for r in range(warmup + steps):
        for i, step in enumerate(runs):
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            step()
            sync(device)
            if r >= warmup:
                wall[i].append(time.perf_counter() - t)
                cpu[i].append(time.process_time() - c)
        print(f"  round {r + 1}/{warmup + steps} done", file=sys.stderr, flush=True)
    return [{"step_s": statistics.median(w), "cpu_s": statistics.median(c), "step_s_all": w} for w, c in zip(wall, cpu)]


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter and return its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{spec['method']} p={spec['p']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def label(spec: dict[str, Any]) -> str:
    name = spec["method"] + (f" p={spec['p']}" if spec["method"] in PROMPTED else "")
    return name + (" +ckpt" if spec["grad_checkpointing"] else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit_base_patch16_224")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--prompt-lengths", default="10,50", help="comma-separated prompt lengths")
    ap.add_argument("--methods", default=",".join(METHODS), help="subset of " + ",".join(METHODS))
    ap.add_argument("--ckpt-methods", default="full,vpt-deep", help="also run these with activation checkpointing")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="vit_tiny_patch16_224, 2 timed steps after 1 warmup")
    ap.add_argument("--no-memory", action="store_true", help="only time the steps (no per-config subprocesses)")
    ap.add_argument("--no-timing", action="store_true", help="only peak memory and FLOPs (one subprocess each)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.model, args.steps, args.warmup = "vit_tiny_patch16_224", 2, 1
    lengths = [int(p) for p in args.prompt_lengths.split(",")]
    common = {"model": args.model, "batch": args.batch, "img_size": args.img_size, "device": args.device}
    common.update(steps=args.steps, warmup=args.warmup, threads=args.threads)
    specs = []
    for method in args.methods.split(","):
        for p in lengths if method in PROMPTED else [0]:
            specs.append({**common, "method": method, "p": p, "grad_checkpointing": False})
            if method in args.ckpt_methods.split(","):
                specs.append({**common, "method": method, "p": p, "grad_checkpointing": True})
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rate = matmul_rate(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{args.model}, {args.img_size}px, batch {args.batch}, fp32, {args.device} "
        f"({torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load {load:.1f}); matmul rate "
        f"{rate / 1e9:.1f} GFLOP/s; median of {args.steps} steps after {args.warmup} warmup"
    )
    results = [{**spec} for spec in specs]
    if not args.no_memory:
        for res in results:
            res.update(run_config(res))
            print(f"  memory/FLOPs of {label(res)} measured", file=sys.stderr, flush=True)
    if not args.no_timing:
        for res, timing in zip(results, time_round_robin(specs, args.steps, args.warmup)):
            res.update(timing)
    nan = float("nan")
    full = next((r for r in results if r["method"] == "full" and not r["grad_checkpointing"]), results[0])
    head = f"{'configuration':<20}{'wall ms':>9}{'x full':>8}{'cpu ms':>9}{'x full':>8}{'peak MB':>9}{'x full':>8}"
    print(head + f"{'GFLOP':>8}{'GFLOP/s':>9}{'% mm':>6}{'frozen grads':>14}")
    for r in results:
        mem, flops = r.get("peak_bytes", nan), r.get("flops", nan)
        wall, cpu = r.get("step_s", nan), r.get("cpu_s", nan)
        achieved = flops / wall
        print(
            f"{label(r):<20}{wall * 1e3:>9.0f}{wall / full.get('step_s', nan):>8.2f}"
            f"{cpu * 1e3:>9.0f}{cpu / full.get('cpu_s', nan):>8.2f}"
            f"{mem / 2**20:>9.0f}{mem / full.get('peak_bytes', nan):>8.2f}"
            f"{flops / 1e9:>8.1f}{achieved / 1e9:>9.1f}{100 * achieved / rate:>6.0f}"
            f"{r.get('frozen_with_grad', '-'):>14}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"matmul_flops": rate, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
