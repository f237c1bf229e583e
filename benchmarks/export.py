"""onnxruntime vs PyTorch eager: latency and throughput of an exported task on this CPU, side by side.

For each backbone (random weights, ``pretrained=False``) a vpt-deep task (p=10, 100 classes) is saved, exported
with ``vptune.export.export_task`` (ONNX, check on) and loaded back as the PyTorch model. Both run the same
float32 batch in one process, timed round-robin (one forward each per round, so a change in machine load hits
both alike), with the same number of threads; the median per configuration is reported with the ratio
onnxruntime / PyTorch (below 1: onnxruntime is faster). Process CPU time (all threads) is given as a ratio too;
onnxruntime's worker threads spin while waiting by default, which counts as CPU time.

Examples::

    nice -n 19 python benchmarks/export.py                      # micro ViT and ViT-B/16, batch 1 and 32
    python benchmarks/export.py --models vptune_micro_vit --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vptune.data import preprocessing_config
from vptune.export import export_task
from vptune.export.base import require
from vptune.model import build_model
from vptune.tasks import load_task, save_task

METHOD = {"name": "vpt-deep", "prompt_length": 10}
NUM_CLASSES = 100


def make_task(model_name: str, root: Path) -> Path:
    """A vpt-deep task on ``model_name`` with random weights, saved under ``root``."""
    torch.manual_seed(0)
    model = build_model(model_name, METHOD, NUM_CLASSES, pretrained=False)
    source = {"pretrained": False, "weights": None, "img_size": None}
    classes = [f"class_{i}" for i in range(NUM_CLASSES)]
    save_task(root, model, classes=classes, preprocessing=preprocessing_config(model.backbone), backbone_source=source)
    return root


def time_pair(runs: dict, batch: np.ndarray, reps: int, warmup: int) -> dict[str, list[tuple[float, float]]]:
    """Round-robin (wall, process CPU) times in seconds of each runner on ``batch``."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(warmup + reps):
        for name, run in runs.items():
            t, c = time.perf_counter(), time.process_time()
            run(batch)
            if r >= warmup:
                times[name].append((time.perf_counter() - t, time.process_time() - c))
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vptune_micro_vit,vit_base_patch16_224")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--reps", type=int, default=5, help="timed forwards per configuration (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="threads for both runtimes (default: torch's)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    ort = require("onnxruntime")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"vpt-deep p=10, {NUM_CLASSES} classes, random weights, fp32 CPU, {threads} threads for both runtimes "
        f"(load {load:.1f}); torch {torch.__version__}, onnxruntime {ort.__version__}; median of {args.reps} "
        f"forwards after {args.warmup} warmup, round-robin"
    )
    head = ["torch ms", "ort ms", "torch img/s", "ort img/s", "ort/torch", "cpu ort/torch"]
    print(f"{'model':<24}{'batch':>6}" + "".join(f"{h:>14}" for h in head))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            task = make_task(name, Path(tmp) / name)
            t = time.perf_counter()
            result = export_task(task, "onnx", Path(tmp) / f"{name}.onnx")
            export_s = time.perf_counter() - t
            model, _ = load_task(task)
            session = ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
            h, w = result.meta["input"]["shape"][2:]

            def run_torch(x: np.ndarray, model=model) -> np.ndarray:
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).numpy()

            def run_ort(x: np.ndarray, session=session) -> np.ndarray:
                return session.run(["logits"], {"images": x})[0]

            for batch_size in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).standard_normal((batch_size, 3, h, w)).astype(np.float32)
                times = time_pair({"torch": run_torch, "ort": run_ort}, x, args.reps, args.warmup)
                pt, ox = (statistics.median(w for w, _ in times[k]) for k in ("torch", "ort"))
                pc, oc = (statistics.median(c for _, c in times[k]) for k in ("torch", "ort"))
                row = {
                    "model": name,
                    "batch": batch_size,
                    "torch_ms": pt * 1e3,
                    "ort_ms": ox * 1e3,
                    "torch_img_s": batch_size / pt,
                    "ort_img_s": batch_size / ox,
                    "ort_over_torch": ox / pt,
                    "torch_cpu_ms": pc * 1e3,
                    "ort_cpu_ms": oc * 1e3,
                    "cpu_ort_over_torch": oc / pc,
                    "export_s": export_s,
                    "exporter": result.meta["exporter"],
                    "check_max_abs_diff": result.check["max_abs_diff"],
                }
                rows.append(row)
                cells = [pt * 1e3, ox * 1e3, batch_size / pt, batch_size / ox]
                ratios = f"{ox / pt:>14.2f}{oc / pc:>14.2f}"
                print(f"{name:<24}{batch_size:>6}" + "".join(f"{v:>14.1f}" for v in cells) + ratios, flush=True)
            print(
                f"  {name}: exported in {export_s:.1f} s with {result.meta['exporter']}, "
                f"{result.bytes / 1e6:.1f} MB; check max |logit diff| {result.check['max_abs_diff']:.2e}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "threads": threads, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
