"""Wall time of one benchmark suite with 1 worker vs N workers sharing it through a SQLite database, side by side.

Each configuration runs the whole suite (default ``offline-quick``) from an empty output folder; the N-worker
case starts N ``vptune bench SUITE --storage sqlite:///...`` processes at once, each with ``--threads`` torch
threads (OMP_NUM_THREADS), so that 1 x T and N x T/N use the same cores. Both reports' report.csv are compared
(the tables must be identical). The configurations alternate for ``--rounds`` rounds; medians are printed.

    python benchmarks/bench_workers.py                         # offline-quick, 1 worker x 2 threads vs 2 x 1
    python benchmarks/bench_workers.py --workers 4 --cores 4   # 1 x 4 threads vs 4 x 1
    python benchmarks/bench_workers.py --set epochs=1          # a shorter suite
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(suite: str, sets: list[str], workers: int, threads: int, root: Path) -> tuple[float, str]:
    """Run the suite with ``workers`` processes of ``threads`` threads each; (wall seconds, report.csv)."""
    out = root / f"w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    storage = f"sqlite:///{root / f'w{workers}.db'}"
    Path(storage.removeprefix("sqlite:///")).unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "vptune", "bench", suite, "--out", str(out), "--no-progress", "--no-report"]
    cmd += [a for s in sets for a in ("--set", s)]
    if workers > 1:
        cmd += ["--storage", storage, "--poll", "1"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(out.parent / f"w{workers}-{i}.log").open("w"))
        for i in range(workers)
    ]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"{workers} workers: exit codes {codes}; logs in {root}")
    subprocess.run([sys.executable, "-m", "vptune", "report", str(out)], check=True, capture_output=True)
    return wall, (out / "report.csv").read_text()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="offline-quick")
    ap.add_argument("--set", action="append", default=[], help="suite override, e.g. epochs=1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2, help="threads of the single worker = workers x their threads")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vptune-bench-workers-"))
    per = max(1, args.cores // args.workers)
    times: dict[int, list[float]] = {1: [], args.workers: []}
    reports: dict[int, str] = {}
    for r in range(args.rounds):
        for n, threads in ((1, args.cores), (args.workers, per)):
            wall, reports[n] = run(args.suite, args.set, n, threads, root)
            times[n].append(wall)
            print(f"round {r + 1}: {n} worker(s) x {threads} thread(s): {wall:.1f} s", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(f"\n{args.suite} ({' '.join(args.set) or 'as shipped'}), {args.cores} cores, median of {args.rounds}:")
    print(f"| workers x threads | wall time |\n|---|---|\n| 1 x {args.cores} | {one:.1f} s |")
    print(f"| {args.workers} x {per} | {many:.1f} s |")
    print(f"ratio 1 worker / {args.workers} workers: {one / many:.2f}x")
    same = reports[1] == reports[args.workers]
    differing = sum(a != b for a, b in zip(reports[1].splitlines(), reports[args.workers].splitlines(), strict=False))
    print(f"report.csv identical: {same} ({differing} differing rows)")
    if not same and args.cores != per:
        print(
            f"  expected: {args.cores} vs {per} torch threads per process change the float summation order, so the "
            "runs differ numerically; tests/test_workers.py checks that 2 workers equal 1 at one thread each"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
