"""Mixed-task batches on one backbone: every plan of the batch planner vs the alternatives, side by side in one run.

    .venv/bin/python benchmarks/multitask.py --threads 1 --rounds 3 --seconds 1 --batch 64 8
    .venv/bin/python benchmarks/multitask.py --model vit_base_patch16_224 --batch 64 --device cuda --dtype bfloat16

Random backbone weights (speed and memory do not depend on them); T vpt-deep tasks with prompt lengths spread
1..max; the batch interleaves the tasks. For each batch size, on the same images:
  plan:<kind>  the bank with the planner forced to padded (one pass padded to the longest prompt), buckets,
               per-task, varlen (packed, no padding) or auto (the calibrated cost model's choice for a new
               composition; this recurring one is raced: its shortlisted plans timed in turn, the fastest kept)
  single       the longest-prompt task's own AdaptedModel on a batch of the same size (one task, no padding)
  sub-batch    each task's own AdaptedModel on its share of the batch, one task after the other
Throughput is each variant's fastest call over interleaved rounds (other jobs on a shared machine only add time
to a call); the mean over all calls is reported too. The planner is calibrated first, as ``vptune serve`` does, and
auto runs the batch until its race is settled before the timed rounds (steady state: a server's recurring
compositions); those warm-up batches and their seconds are reported (``auto_warmup``), not timed.
Memory (parameter and buffer bytes held) of a bank of T vpt-deep, T LoRA, T BitFit and T adapter tasks against one
backbone, on ``--memory-model`` (default: the timed model); the bank reports how many tasks hold a private copy.
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
from vptune.tasks.planner import PLANS, Segment
from vptune.tasks.race import Race
from vptune.tasks.row_edits import structural_copy


def call_times(fn: Callable[[], object], device: torch.device, min_seconds: float) -> list[float]:
    """Seconds of each call of ``fn`` (after two warm-up calls), over at least ``min_seconds`` and 3 calls."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        fn()
    sync()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


CONFIGS = {"lora": {"name": "lora", "rank": 8}, "bias": {"name": "bias"}, "adapter": {"name": "adapter"}}
"""The memory section's methods besides vpt-deep: LoRA rank 8 on qkv, BitFit, adapters with the default r = 8."""


def make_tasks(model: str, vit: torch.nn.Module, root: Path, method: str, tasks: int, max_len: int) -> list:
    """Save ``tasks`` artifacts: vpt-deep with prompt lengths spread over 1..``max_len``, or :data:`CONFIGS`' method
    (trained tensors made random, so every bias differs from the backbone's)."""
    info, digest = describe(model, vit), weights_hash(vit)
    size = int(vit.patch_embed.img_size[0])
    pre = {"input_size": [size, size], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    src = {"pretrained": False, "weights": None, "img_size": None}
    lengths = np.linspace(1, max_len, tasks).round().astype(int).tolist()
    biases = [n for n, _ in vit.named_parameters() if n.endswith(".bias")]  # BitFit writes these: private copies
    out = []
    for i, p in enumerate(lengths):
        config = {"name": "vpt-deep", "prompt_length": p} if method == "vpt-deep" else CONFIGS[method]
        base = vit if method == "vpt-deep" else structural_copy(vit, biases)  # methods wrap or train its modules
        adapted = AdaptedModel(base, info, build_method(config, info), 10 + i, backbone_hash=digest)
        with torch.no_grad():
            for t in adapted.parameters():
                if t.requires_grad:
                    t.add_(0.01 * torch.randn_like(t))
        path = root / f"{method}{i}"
        classes = [str(c) for c in range(10 + i)]
        save_task(path, adapted, classes=classes, preprocessing={**pre, "augment": "none"}, backbone_source=src)
        out.append((path.name, path, p if method == "vpt-deep" else 0))
    return out


def memory(model: str, method: str, tasks: int, max_len: int) -> dict:
    """Bytes held by a bank of ``tasks`` tasks against one backbone."""
    vit = create_vit(model, pretrained=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        specs = make_tasks(model, vit, Path(tmp), method, tasks, max_len)
        bank = MultiTaskModel.from_dirs({name: path for name, path, _ in specs}, backbone=vit, model_name=model)
    held, backbone = bank.memory_bytes()["total"], tensor_bytes(vit)
    isolated = sum(t["mode"] == "isolated" for t in bank.tasks)
    return {
        "bank_bytes": held,
        "backbone_bytes": backbone,
        "bank_vs_one_backbone": round(held / backbone, 4),
        "tasks_with_a_private_copy": isolated,
    }


def time_batch(args: argparse.Namespace, bank: MultiTaskModel, own: dict, specs: list, batch: int) -> dict:
    """Throughput of every variant at one batch size (interleaved rounds, median kept) and the largest error."""
    device = bank.device
    size = bank.backbone.patch_embed.img_size
    images = torch.randn(batch, 3, *size, device=device, dtype=args.torch_dtype)  # (B, 3, H, W)
    names = [specs[i % len(specs)][0] for i in range(batch)]  # tasks interleaved
    longest = max(specs, key=lambda s: s[2])[0]
    shares = {name: images[[i for i, n in enumerate(names) if n == name]] for name, _, _ in specs}
    segments = [Segment(n, len(x), bank.entries[n].length) for n, x in shares.items() if len(x)]
    plans = bank.planner.candidates(segments)
    before = dict(bank.planner.chosen)
    bank.set_plan("auto")
    choice = bank.planner.plan(segments)  # what auto runs (a padded split or the packed pass)

    def with_plan(kind: str) -> Callable[[], object]:
        return lambda: (bank.set_plan(kind), bank(images, names))

    race, warm, start = None, 0, time.perf_counter()
    with torch.inference_mode():  # steady state: auto's race over this composition's plans is settled first
        while warm < 200 and not (race is not None and race.settled):
            bank(images, names)
            warm += 1
            race = bank.planner.races.get(bank.planner.composition(segments))
            race = race if isinstance(race, Race) else None
    warmup = {"batches": warm, "seconds": round(time.perf_counter() - start, 2)}

    variants = {f"plan:{k}": with_plan(k) for k in PLANS if k in plans}
    variants |= {"single": lambda: own[longest](images), "sub-batch": lambda: [own[n](x) for n, x in shares.items()]}
    rounds: dict[str, list[list[float]]] = {key: [] for key in variants}  # per round, every call's seconds
    with torch.inference_mode():
        for r in range(args.rounds):  # interleaved rounds: a busy machine slows every variant alike
            for key, fn in variants.items():
                rounds[key].append(call_times(fn, device, args.seconds))
            line = ", ".join(f"{k} {batch * len(v[-1]) / sum(v[-1]):.1f}" for k, v in rounds.items())
            print(f"batch {batch} round {r + 1} (images/s): {line}", flush=True)
        diffs = {}
        for kind in (k for k in PLANS if k in plans):
            bank.set_plan(kind)
            mixed = bank(images, names)
            ref = [own[n](images[i : i + 1])[0] for i, n in enumerate(names)]
            diffs[kind] = max(float((a.float() - b.float()).abs().max()) for a, b in zip(mixed, ref))
    # the fastest call of each variant: other jobs on a shared machine only ever add time to a call
    speed = {key: batch / min(min(r) for r in v) for key, v in rounds.items()}
    median = {key: batch * len(sum(v, [])) / sum(sum(v, [])) for key, v in rounds.items()}
    auto = speed["plan:auto"]
    learnt = {f"{family}@{size}": round(f, 3) for (family, size), f in bank.planner.correction.items()}
    bank.set_plan("auto")
    after = bank.planner.choose(segments)[0]  # auto's choice once corrected by the batches it ran
    return {
        "batch": batch,
        "images_per_s": {k: round(v, 1) for k, v in speed.items()},
        "images_per_s_mean_over_calls": {k: round(v, 1) for k, v in median.items()},
        "planner_choice": choice.describe(),
        "planner_choice_after_timing": after.describe(),
        "auto_warmup": warmup,
        "race": None if race is None else {"winner": race.kinds[race.fastest()], "fastest_calls": race.summary()},
        "online_corrections": learnt,
        "auto_plans_run": {
            k: n - before.get(k, 0)
            for k, n in bank.planner.chosen.items()
            if k.startswith("auto:") and n > before.get(k, 0)
        },
        "predicted_ms": {k: round(1000 * p.cost, 3) for k, p in plans.items()} | {"auto": round(1000 * choice.cost, 3)},
        "measured_ms": {k: round(1000 * batch / speed[f"plan:{k}"], 3) for k in plans},  # fastest call
        "auto_vs_sub_batches": round(auto / speed["sub-batch"], 3),
        "auto_vs_single_longest": round(auto / speed["single"], 3),
        "padded_vs_sub_batches": round(speed["plan:padded"] / speed["sub-batch"], 3),
        "best_plan_measured": max((k for k in variants if k.startswith("plan:")), key=speed.get),
        "max_abs_diff_vs_own_model": diffs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vptune_micro_vit", help="timm ViT name (random weights)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=50, help="longest prompt length")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 8], help="batch sizes timed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all variants, interleaved (median kept)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--memory-model", help="also count memory on this model (e.g. vit_base_patch16_224)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.torch_dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vit = create_vit(args.model, pretrained=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        specs = make_tasks(args.model, vit, Path(tmp), "vpt-deep", args.tasks, args.max_len)
        vit = vit.to(device, args.torch_dtype)
        bank = MultiTaskModel(vit, model_name=args.model, device=device)
        own = {}
        for name, path, _ in specs:
            bank.add_task(name, path)
            own[name] = attach_task(read_task(path), vit, bank.digest).to(device, args.torch_dtype).eval()
    start = time.perf_counter()
    cost = bank.calibrate()
    calibration = {"seconds": round(time.perf_counter() - start, 2), **cost.coefficients()}
    report = {
        "model": args.model,
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "prompt_lengths": [p for _, _, p in specs],
        "calibration": calibration,
        "batches": [time_batch(args, bank, own, specs, b) for b in args.batch],
        "memory": {},
    }
    for method in ("vpt-deep", *CONFIGS):
        report["memory"][method] = memory(args.memory_model or args.model, method, args.tasks, args.max_len)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
