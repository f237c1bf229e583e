"""Many workers, one benchmark: two worker processes share offline-quick through SQLite and a real PostgreSQL
server (started here in a temporary folder), one of them killed with SIGKILL mid-run. No run is done twice, the
suite completes, and the report equals a single worker's."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vptune.bench import load_suite, write_report
from vptune.bench.search import import_optuna, open_storage
from vptune.bench.workers import suite_digest

SETS = ["epochs=1"]  # offline-quick at one epoch: 12 runs (8 selection, 4 final), ~1 min on one core
WORKER = """
import sys
from vptune.bench import load_suite, run_suite
from vptune.bench.workers import WorkerOptions
out, storage, sets = sys.argv[1], sys.argv[2] or None, sys.argv[3:]
opts = WorkerOptions(storage=storage, heartbeat_s=1, grace_s=4, poll_s=0.5)
run_suite(load_suite("offline-quick", sets), out, workers=opts, log=lambda m: print(m, flush=True))
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same arithmetic in every process


def start_worker(out: Path, storage: str, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    cmd = [sys.executable, "-c", WORKER, str(out), storage, *SETS]
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=ENV)


@pytest.fixture(scope="module")
def single_worker_report(tmp_path_factory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("single")
    proc = start_worker(out, "", out / "worker.log")
    assert proc.wait(timeout=900) == 0, (out / "worker.log").read_text()[-3000:]
    return report_csv(out)


def report_csv(out: Path) -> list[dict[str, str]]:
    """report.csv rows without ``stored_bytes_per_task``: task.json records its output path, whose length differs."""
    write_report(out)
    rows = list(csv.DictReader((out / "report.csv").read_text().splitlines()))
    assert rows and all(r.pop("stored_bytes_per_task") is not None for r in rows)
    return rows


def run_two_workers_one_killed(out: Path, storage: str) -> tuple[list[str], list[str]]:
    """Start two workers; SIGKILL the first while it trains a VPT-deep run (seconds long); the second finishes."""
    logs = [out.parent / f"{out.name}-w{i}.log" for i in range(2)]
    a, b = start_worker(out, storage, logs[0]), start_worker(out, storage, logs[1])
    deadline = time.time() + 600
    while time.time() < deadline:  # mid-run: its latest run is a vpt-deep run that has just begun
        starts = [ln for ln in logs[0].read_text().splitlines() if " / select " in ln or " / final " in ln]
        if starts and " / vpt-deep / " in starts[-1]:
            break
        if a.poll() is not None:
            pytest.fail("worker A finished before it could be killed:\n" + logs[0].read_text()[-2000:])
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    killed_run = starts[-1]
    assert b.wait(timeout=900) == 0, logs[1].read_text()[-3000:]
    return killed_run, [log.read_text() for log in logs]


def check_database(storage: str, out: Path) -> None:
    """Every run complete exactly once; the killed worker's run failed once and was retried."""
    optuna = import_optuna()
    store = open_storage(storage)
    prefix = f"vptune-bench/offline-quick/{suite_digest(load_suite('offline-quick', SETS))}/"
    complete: dict[str, int] = {}
    failed = 0
    for summary in optuna.get_all_study_summaries(store):
        if not summary.study_name.startswith(prefix):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        for t in study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.COMPLETE:
                complete[t.user_attrs["key"]] = complete.get(t.user_attrs["key"], 0) + 1
            failed += t.state == optuna.trial.TrialState.FAIL
    assert len(complete) == 12 and set(complete.values()) == {1}, complete
    assert failed == 1
    assert len(list(out.glob("runs/**/result.json"))) == 12


def check_no_run_twice(logs: list[str], killed_run: str) -> None:
    """A run is trained by one worker only; the killed worker's unfinished run is the one taken over."""
    started = [ln for log in logs for ln in log.splitlines() if " / select " in ln or " / final " in ln]
    twice = {ln for ln in started if started.count(ln) > 1}
    assert twice <= {killed_run}, twice
    assert killed_run in logs[1], "the surviving worker took the killed worker's run over"


def test_two_workers_share_sqlite_one_killed(tmp_path, single_worker_report):
    out = tmp_path / "bench"
    storage = f"sqlite:///{tmp_path / 'bench.db'}"
    killed_run, logs = run_two_workers_one_killed(out, storage)
    check_database(storage, out)
    check_no_run_twice(logs, killed_run)
    assert report_csv(out) == single_worker_report


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of Debian's `postgresql` package in a temporary folder (initdb + pg_ctl)."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary (in vptune[dev])")
    root = Path(tempfile.mkdtemp(prefix="vptune-pg-"))  # outside pytest's root-only folders
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres (or nobody) user
        user = "postgres" if shutil.which("runuser") and _user_exists("postgres") else "nobody"
        shutil.chown(root, user=user)
        as_user = ["runuser", "-u", user, "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(initdb, "-D", str(data), "-U", "vptune", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://vptune@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_two_workers_share_postgres_one_killed(tmp_path, postgres, single_worker_report):
    out = tmp_path / "bench"
    killed_run, logs = run_two_workers_one_killed(out, postgres)
    check_database(postgres, out)
    check_no_run_twice(logs, killed_run)
    assert report_csv(out) == single_worker_report


def test_claims_are_exclusive_under_contention(tmp_path):
    """Four processes race to claim 40 queued runs of one SQLite study: each run is claimed exactly once."""
    storage = f"sqlite:///{tmp_path / 'race.db'}"
    optuna = import_optuna()
    study = optuna.create_study(study_name="race", storage=open_storage(storage))
    for i in range(40):
        study.enqueue_trial({}, user_attrs={"key": f"run{i}"})
    racer = """
import sys, json
from vptune.bench.search import import_optuna, open_storage
optuna = import_optuna()
store = open_storage(sys.argv[1])
study = optuna.load_study(study_name="race", storage=store)
sid = store.get_study_id_from_name("race")
got = []
for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
    tid = store.get_trial_id_from_study_id_trial_number(sid, t.number)
    if store.set_trial_state_values(tid, optuna.trial.TrialState.RUNNING):
        got.append(t.user_attrs["key"])
print(json.dumps(got))
"""
    procs = [subprocess.Popen([sys.executable, "-c", racer, storage], stdout=subprocess.PIPE, env=ENV)
             for _ in range(4)]  # fmt: skip
    claimed = [k for p in procs for k in json.loads(p.communicate(timeout=300)[0])]
    assert sorted(claimed) == sorted(f"run{i}" for i in range(40))  # all claimed, none twice
