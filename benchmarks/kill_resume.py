"""Crash test of training resume: ``kill -9`` a tiny ``vptune train`` at random moments, resume, compare weights.

    .venv/bin/python benchmarks/kill_resume.py --trials 10

Runs one uninterrupted training (micro ViT, random weights, a generated 3-class image folder, vpt-deep,
``vptune train`` in a forked child of this process, which has vptune imported already) as the reference. Then,
per trial, starts the same run in a fresh folder and sends SIGKILL at a random point of its progress: a random
number of finished epochs (0 to all, the last meaning during the test evaluation or the artifact write) plus a
random fraction of an epoch's time, so kills land in start-up, epochs, checkpoint writes and the artifact write
whatever the machine's load (a run that ends before its kill point is not counted; a new point is drawn). It
resumes the run with the same command until it finishes and checks: the artifact
loads; its tensors equal the reference's bit for bit; ``metrics.jsonl`` holds every epoch exactly once and no
torn line. Prints one line per trial and a JSON summary; exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: forked children need no thread pool

import numpy as np
from PIL import Image

EPOCHS = 4


def make_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 3), ("test", 3)):
        for c, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
                arr[..., c] += 180
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def command(data: Path, out: Path) -> list[str]:
    return [
        "train", "--model", "vptune_micro_vit", "--no-pretrained", "--data", f"folder:{data}",
        "--method", "vpt-deep", "--prompt-length", "2", "--epochs", str(EPOCHS), "--batch-size", "6",
        "--lr", "0.05", "--device", "cpu", "--seed", "3", "--out", str(out), "--no-progress",
    ]  # fmt: skip


def start(argv: list[str]) -> int:
    """Fork a child running ``vptune <argv>`` (output discarded); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: run the CLI and leave without the parent's cleanup
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            from vptune.cli import main as vptune_main

            code = vptune_main(argv)
        finally:
            os._exit(code or 0)
    return pid


def finished(pid: int) -> int | None:
    """The child's exit status when it has ended, else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def epochs_logged(out: Path) -> int:
    log = out / "metrics.jsonl"
    return log.read_bytes().count(b"\n") if log.is_file() else 0


def run(argv: list[str], out: Path, kill_at: tuple[int, float] | None = None) -> tuple[bool, float]:
    """Run to the end, or SIGKILL after ``kill_at = (epochs logged, fraction of an epoch's time)``.

    Returns (finished on its own, seconds).
    """
    began = time.perf_counter()
    pid, epoch_s, marks = start(argv), 5.0, {}
    while True:
        code = finished(pid)
        if code is not None:
            if code != 0:
                raise SystemExit(f"training failed with status {code}: {' '.join(argv)}")
            return True, time.perf_counter() - began
        n = epochs_logged(out)
        marks.setdefault(n, time.perf_counter())
        if n >= 1:
            epoch_s = (marks[n] - marks[0]) / n if n > 0 and 0 in marks else epoch_s
        if kill_at is not None and n >= kill_at[0] and time.perf_counter() - marks[n] >= kill_at[1] * epoch_s:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False, time.perf_counter() - began
        time.sleep(0.02)


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
        _, wall = run(command(data, ref_out), ref_out)
        reference = tensors(ref_out)
        print(f"reference: {wall:.1f} s, {len(reference)} tensors", flush=True)
        trial, unkilled = 0, 0
        while trial < args.trials:
            out = Path(tmp) / f"trial{trial}-{unkilled}"
            kill_at = (rng.randint(0, EPOCHS), rng.random())
            done, _ = run(command(data, out), out, kill_at)
            if done:  # the run ended before the drawn kill point: not a trial, draw again
                unkilled += 1
                print(f"(the run finished before {kill_at[0]} epochs logged + {kill_at[1]:.2f} epoch; drawn again)")
                continue
            had_checkpoint = (out / "checkpoint.pt").is_file()
            had_artifact = (out / "task.json").is_file()
            resumes = 0
            while not done:
                done, _ = run(command(data, out), out)
                resumes += 1
            got = tensors(out)
            diff = max(float(np.abs(got[k] - reference[k]).max()) for k in reference)
            same = set(got) == set(reference) and all(np.array_equal(got[k], reference[k]) for k in reference)
            problem = check_log(out) or (None if same else f"weights differ (max abs diff {diff:.3g})")
            failures += problem is not None
            state = ("after a checkpoint" if had_checkpoint else "before the first checkpoint") + (
                ", task.json present" if had_artifact else ""
            )
            where = f"{kill_at[0]} epochs logged + {kill_at[1]:.2f} epoch"
            rows.append({"trial": trial, "kill_at": where, "state": state, "ok": problem is None})
            print(
                f"trial {trial}: killed at {where} ({state}), {resumes} resume(s): "
                f"{'same weights' if same else problem}",
                flush=True,
            )
            trial += 1
    summary = {
        "kills": args.trials,
        "redrawn": unkilled,
        "reference_s": round(wall, 1),
        "failures": failures,
        "rows": rows,
    }
    print(json.dumps(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
