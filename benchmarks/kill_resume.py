"""Crash test of training resume: ``kill -9`` a tiny ``vptune train`` at random moments, resume, compare weights.

    .venv/bin/python benchmarks/kill_resume.py --trials 10

Runs one uninterrupted training (micro ViT, random weights, a generated 3-class image folder, vpt-deep) as the
reference. Then, per trial, starts the same run in a fresh folder, sends SIGKILL after a random delay drawn
uniformly over the reference's wall time (so kills land in start-up, epochs, checkpoint writes and the artifact
write), resumes it with the same command until it finishes, and checks: the artifact loads; its tensors equal the
reference's bit for bit; ``metrics.jsonl`` holds every epoch exactly once and no torn line. Prints one line per
trial and a JSON summary; exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

EPOCHS = 6


def make_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        for c, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
                arr[..., c] += 180
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def command(data: Path, out: Path) -> list[str]:
    vptune = str(Path(sys.executable).with_name("vptune"))
    return [
        vptune, "train", "--model", "vptune_micro_vit", "--no-pretrained", "--data", f"folder:{data}",
        "--method", "vpt-deep", "--prompt-length", "2", "--epochs", str(EPOCHS), "--batch-size", "8",
        "--lr", "0.05", "--device", "cpu", "--seed", "3", "--out", str(out), "--no-progress",
    ]  # fmt: skip


def run(cmd: list[str], kill_after: float | None = None) -> tuple[bool, float]:
    """Run ``cmd``; with ``kill_after``, SIGKILL it then. Returns (finished on its own, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return False, time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return True, time.perf_counter() - start


def tensors(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from vptune.tasks import load_task

    load_task(out)  # schema, sha256, names, shapes, dtypes, finiteness
    return load_file(str(out / "task.safetensors"))


def check_log(out: Path) -> str | None:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    try:
        records = [json.loads(line) for line in lines]
    except ValueError:
        return "a torn line in metrics.jsonl"
    epochs = [r["epoch"] for r in records if "epoch" in r]
    tests = [r for r in records if r.get("split") == "test"]
    if epochs != list(range(1, EPOCHS + 1)) or len(tests) != 1:
        return f"metrics.jsonl epochs {epochs}, {len(tests)} test records"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="kills (1..50), one per fresh run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args()
    if not 1 <= args.trials <= 50:
        parser.error("use 1..50 trials")
    rng = random.Random(args.seed)
    failures, rows = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        ref_out = Path(tmp) / "reference"
        _, wall = run(command(data, ref_out))
        reference = tensors(ref_out)
        print(f"reference: {wall:.1f} s, {len(reference)} tensors")
        for trial in range(args.trials):
            out = Path(tmp) / f"trial{trial}"
            delay = rng.uniform(0.05, 1.0) * wall
            finished, _ = run(command(data, out), kill_after=delay)
            had_checkpoint = (out / "checkpoint.pt").is_file()
            had_artifact = (out / "task.json").is_file()
            resumes = 0
            while not finished:
                finished, _ = run(command(data, out))
                resumes += 1
            got = tensors(out)
            diff = max(float(np.abs(got[k] - reference[k]).max()) for k in reference)
            same = set(got) == set(reference) and all(np.array_equal(got[k], reference[k]) for k in reference)
            problem = check_log(out) or (None if same else f"weights differ (max abs diff {diff:.3g})")
            failures += problem is not None
            state = (
                "finished before the kill"
                if resumes == 0
                else ("after a checkpoint" if had_checkpoint else "before the first checkpoint")
                + (", task.json present" if had_artifact else "")
            )
            rows.append({"trial": trial, "kill_s": round(delay, 2), "state": state, "ok": problem is None})
            print(f"trial {trial}: killed at {delay:5.1f} s ({state}): {'same weights' if same else problem}")
    summary = {"trials": args.trials, "reference_s": round(wall, 1), "failures": failures, "rows": rows}
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
