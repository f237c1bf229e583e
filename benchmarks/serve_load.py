"""Load test of ``vptune serve``: the server in-process on loopback, bounded concurrent clients, bounded time.

    .venv/bin/python benchmarks/serve_load.py --clients 8 --seconds 10 --plans auto padded --rounds 2

Starts the app (micro ViT, random weights; 8 vpt-deep tasks with prompt lengths 1..50, a LoRA task and a linear
probe) with uvicorn on 127.0.0.1 at a free port, lets ``--clients`` httpx clients post single-image predictions
of random tasks for ``--seconds`` per plan and round (the plans alternate: ``auto`` is the batch planner with its
cost model calibrated at start-up, ``padded`` the planner off: one pass padded to the longest prompt), then
prints per plan requests/s, p50/p99 latency, the error count and how the requests were micro-batched, and stops
the server.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from vptune.backbones import create_vit, describe, weights_hash
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.serve.app import create_app
from vptune.tasks import save_task
from vptune.tasks.lora_bank import shallow_copy
from vptune.tasks.multitask import MultiTaskModel
from vptune.tasks.planner import PLANS
from vptune.tasks.race import Race

MODEL = "vptune_micro_vit"
TASKS = {f"deep{p}": ({"name": "vpt-deep", "prompt_length": p}, 3 + i) for i, p in enumerate(range(1, 51, 7))} | {
    "lora": ({"name": "lora", "rank": 4}, 4),
    "linear": ({"name": "linear"}, 6),
}


def make_bank(root: Path) -> MultiTaskModel:
    """Save the TASKS on the random micro ViT and load them into one bank."""
    vit = create_vit(MODEL, pretrained=False).eval()
    info, digest = describe(MODEL, vit), weights_hash(vit)
    pre = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
    src = {"pretrained": False, "weights": None, "img_size": None}
    bank = MultiTaskModel(vit, model_name=MODEL)
    for name, (method, k) in TASKS.items():
        base = shallow_copy(vit) if method["name"] == "lora" else vit  # LoRA wraps Linear layers of its copy
        model = AdaptedModel(base, info, build_method(method, info), k, backbone_hash=digest)
        save_task(root / name, model, classes=[f"c{i}" for i in range(k)], preprocessing=pre, backbone_source=src)
        bank.add_task(name, root / name)
    return bank


def png_images(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


async def client(url: str, deadline: float, images: list[bytes], seed: int) -> tuple[list[float], int]:
    """Post predictions until ``deadline``; returns the latencies of successes and the error count."""
    rng, latencies, errors = random.Random(seed), [], 0
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        while time.perf_counter() < deadline:
            task = rng.choice(list(TASKS))
            start = time.perf_counter()
            try:
                r = await http.post(
                    "/v1/predict", files={"file": ("x.png", rng.choice(images))}, data={"task": task, "top_k": "3"}
                )
                ok = r.status_code == 200 and r.json()["task"] == task
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
    return latencies, errors


def summary(latencies: list[float], errors: int, elapsed: float, batches: int, items: int) -> dict:
    """Requests/s, p50/p99 latency, errors and the mean micro-batch of one plan's share of the run."""
    latencies = sorted(latencies)
    return {
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies else None,
        "latency_ms_p99": round(1000 * float(np.percentile(latencies, 99)), 1) if latencies else None,
        "batches": batches,
        "mean_batch": round(items / max(batches, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (bounded)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the load per plan and round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all plans, alternating")
    parser.add_argument("--plans", nargs="+", default=["auto", "padded"], choices=list(PLANS))
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 600 and 1 <= args.rounds <= 10):
        parser.error("use 1..256 clients, at most 600 seconds and 1..10 rounds")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        bank = make_bank(Path(tmp))
    cost = bank.calibrate() if "auto" in args.plans else None  # as `vptune serve --plan auto` does at start-up
    app = create_app(bank, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # loopback only, a free port chosen by the OS
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    runs: dict[str, list] = {plan: [[], 0, 0.0, 0, 0] for plan in args.plans}  # latencies, errors, s, batches, items
    try:
        for _ in range(200):  # wait for startup (at most 20 s)
            if server.started:
                break
            time.sleep(0.1)
        images = png_images(16)

        async def drive() -> list[tuple[list[float], int]]:
            deadline = time.perf_counter() + args.seconds
            return await asyncio.gather(*(client(url, deadline, images, i) for i in range(args.clients)))

        stats = app.state.batcher.stats
        for _ in range(args.rounds):
            for plan in args.plans:
                bank.set_plan(plan)
                batches, items, start = stats["batches"], stats["items"], time.perf_counter()
                results = asyncio.run(drive())
                run = runs[plan]
                run[0] += [lat for lats, _ in results for lat in lats]
                run[1] += sum(e for _, e in results)
                run[2] += time.perf_counter() - start
                run[3] += stats["batches"] - batches
                run[4] += stats["items"] - items
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    report = {
        "clients": args.clients,
        "tasks": {name: method for name, (method, _) in TASKS.items()},
        "planner_cost_model": None if cost is None else cost.coefficients(),
        "plans": {plan: summary(*run) for plan, run in runs.items()},
        "planner_choices": bank.planner.chosen,
        "planner_corrections": {
            f"{family}@{size}": round(f, 3) for (family, size), f in bank.planner.correction.items()
        },
        "planner_compositions": {
            "seen": len(bank.planner.races),
            "raced": sum(isinstance(r, Race) for r in bank.planner.races.values()),
            "settled": sum(isinstance(r, Race) and r.settled for r in bank.planner.races.values()),
        },
        "torch_threads": torch.get_num_threads(),
    }
    if {"auto", "padded"} <= set(runs):
        auto, padded = report["plans"]["auto"], report["plans"]["padded"]
        report["auto_vs_padded_requests_per_s"] = round(auto["requests_per_s"] / max(padded["requests_per_s"], 1e-9), 3)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
