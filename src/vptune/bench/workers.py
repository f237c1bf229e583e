"""Many workers, one benchmark: every run of a suite is a queued Optuna trial that exactly one worker claims.

Per task and method there is one study of selection runs (one trial per grid point) and, once every selection
run is complete, one study of final runs (one trial per seed x train fraction at the chosen point). The first
worker to create a study (study names are unique in the database) queues its runs as WAITING trials; a worker
claims a run by moving it WAITING -> RUNNING, which the database does atomically (see
:func:`vptune.bench.search.open_storage`), records a heartbeat while it trains, and marks it COMPLETE with the
run's summary (lr, wd, options, validation curve) as a trial attribute. The choice of the final point reads
those summaries with the same :func:`vptune.bench.plan.select` as a single worker, so every worker derives the
same final runs. A worker killed with ``kill -9`` stops its heartbeat: after the grace period any other worker
fails that trial and queues a copy, which the next free worker claims and resumes from the run's checkpoint.

Without a storage URL the same code runs on Optuna's in-memory storage (one process). The result files
(``OUT/runs/.../result.json``) are written exactly as by a single worker, so the report is the same; workers on
several machines need ``OUT`` on a shared file system (or their ``runs/`` folders merged before ``report``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .plan import RunSpec, final_runs, read_result, select, selection_runs
from .search import import_optuna, open_storage
from .suite import MethodSpec, Suite, TaskInfo

Log = Callable[[str], None]
READY = "vptune_ready"  # study attribute: every run of the study is queued
CREATED = "vptune_created"  # study attribute: when queueing began (a creator that died is taken over)
TAKEOVER_S = 120.0


@dataclass
class WorkerOptions:
    """How a worker shares a suite with others.

    Attributes:
        storage: Optuna RDB URL shared by every worker (``sqlite:///OUT/bench.db``, ``postgresql://...``);
            None: in memory, this process only.
        heartbeat_s: How often a running run's heartbeat is recorded.
        grace_s: A run without a heartbeat for this long is failed and queued again (its worker died).
        poll_s: How long an idle worker waits before looking for work again (runs held by others).
        worker: A name for logs (default host:pid).
    """

    storage: str | None = None
    heartbeat_s: int = 30
    grace_s: int = 120
    poll_s: float = 5.0
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def suite_digest(suite: Suite) -> str:
    """What every worker of one benchmark must agree on (the data root may differ between machines)."""
    data = suite.model_dump(mode="json")
    data.pop("data_root", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def run_key(run: RunSpec, out: Path) -> str:
    """The run's folder relative to OUT: its identity in the database."""
    return run.folder(out).relative_to(out).as_posix()


class RunQueue:
    """The suite's runs as queued trials in one Optuna storage."""

    def __init__(self, suite: Suite, out: Path, opts: WorkerOptions) -> None:
        self.optuna = import_optuna()
        self.suite, self.out, self.opts = suite, out, opts
        self.storage = open_storage(opts.storage, opts.heartbeat_s, opts.grace_s)
        self.prefix = f"vptune-bench/{suite.name}/{suite_digest(suite)}"
        self._studies: dict[str, Any] = {}

    def study(self, name: str, runs: list[RunSpec]) -> Any | None:
        """The study holding ``runs`` (created and filled by the first worker), or None while it is being filled."""
        full = f"{self.prefix}/{name}"
        if full in self._studies:
            return self._studies[full]
        optuna = self.optuna
        try:
            study = optuna.create_study(study_name=full, storage=self.storage, direction="maximize")
            study.set_user_attr(CREATED, time.time())
            self._enqueue(study, runs)
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=full, storage=self.storage)
            attrs = study.user_attrs
            if not attrs.get(READY):
                if time.time() - float(attrs.get(CREATED, time.time())) < TAKEOVER_S:
                    return None  # another worker is queueing the runs right now
                self._enqueue(study, runs)  # its creator died while queueing: queue what is missing
        self._studies[full] = study
        return study

    def _enqueue(self, study: Any, runs: list[RunSpec]) -> None:
        have = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
        for run in runs:
            key = run_key(run, self.out)
            if key not in have:
                study.enqueue_trial({}, user_attrs={"key": key})
        study.set_user_attr(READY, True)

    def claim(self, study: Any) -> tuple[int, int, str] | None:
        """Move one WAITING run to RUNNING for this worker: (trial id, trial number, key), or None."""
        optuna = self.optuna
        state = optuna.trial.TrialState
        optuna.storages.fail_stale_trials(study)  # runs of dead workers -> FAIL, and a queued copy each
        study_id = self.storage.get_study_id_from_name(study.study_name)
        for trial in study.get_trials(deepcopy=False, states=(state.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                if hasattr(self.storage, "record_heartbeat"):  # first: a worker killed right after claiming is seen
                    self.storage.record_heartbeat(trial_id)
                if self.storage.set_trial_state_values(trial_id, state.RUNNING):
                    self.storage.set_trial_user_attr(trial_id, "worker", self.opts.worker)
                    return trial_id, trial.number, trial.user_attrs["key"]
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def complete(self, trial_id: int, value: float, summary: dict[str, Any]) -> None:
        self.storage.set_trial_user_attr(trial_id, "result", summary)
        self.storage.set_trial_state_values(trial_id, self.optuna.trial.TrialState.COMPLETE, [value])

    def give_up(self, study: Any, trial_id: int, key: str) -> None:
        """This worker stops (an error or Ctrl-C): fail its run and queue a copy for the other workers."""
        self.storage.set_trial_state_values(trial_id, self.optuna.trial.TrialState.FAIL)
        study.enqueue_trial({}, user_attrs={"key": key, "retry_of": trial_id})

    def completed(self, study: Any) -> dict[str, dict[str, Any]]:
        """key -> summary of every complete run of the study."""
        done = study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.COMPLETE,))
        return {t.user_attrs["key"]: t.user_attrs["result"] for t in done if "result" in t.user_attrs}

    def heartbeat(self, trial_id: int) -> Callable[[], None]:
        """Record heartbeats for the run in a thread until the returned function is called."""
        if not hasattr(self.storage, "record_heartbeat"):  # in-memory storage: one process, nothing to watch
            return lambda: None
        stop = threading.Event()
        self.storage.record_heartbeat(trial_id)

        def beat() -> None:
            while not stop.wait(self.opts.heartbeat_s):
                self.storage.record_heartbeat(trial_id)

        thread = threading.Thread(target=beat, name=f"vptune-heartbeat-{trial_id}", daemon=True)
        thread.start()

        def done() -> None:
            stop.set()
            thread.join()

        return done


def summary_of(record: dict[str, Any]) -> dict[str, Any]:
    """What :func:`select` and the final runs need from a run's result, small enough for a trial attribute."""
    keep = ("lr", "wd", "grid_options", "val_curve", "dir", "phase", "seed")
    return {k: record.get(k) for k in keep}


def score_of(record: dict[str, Any]) -> float:
    metrics = record.get("metrics", {})
    value = metrics.get("val_top1", metrics.get("val_miou", metrics.get("test_top1", metrics.get("test_miou"))))
    return float(value) if value is not None else float("nan")


Execute = Callable[[TaskInfo, MethodSpec, RunSpec, dict[str, Any]], dict[str, Any]]


def work(
    suite: Suite,
    out: Path,
    pairs: list[tuple[TaskInfo, MethodSpec]],
    execute: Execute,
    opts: WorkerOptions,
    log: Log,
) -> dict[str, int]:
    """Claim and run the suite's runs until every one is complete; returns counts for this worker.

    ``execute(task, method, run, extra)`` trains one run (or reads its existing ``result.json``) and returns the
    result record; ``extra`` holds the selection for final runs.
    """
    queue = RunQueue(suite, out, opts)
    counts = {"trained": 0, "skipped": 0, "waited": 0}
    finished: set[str] = set()  # (task, method) pairs whose final runs are all complete: never looked at again
    while True:
        progressed, pending = False, False
        for task, method in pairs:
            if f"{task.name}/{method.name}" in finished:
                continue
            stage = f"{task.name}/{method.name}"
            sel_runs = selection_runs(suite, task, method)
            sel = queue.study(f"{stage}/select", sel_runs)
            if sel is None:
                pending = True
                continue
            if _take(queue, sel, suite, task, method, sel_runs, execute, counts, log, {}):
                progressed = True
                break
            done = queue.completed(sel)
            if len(done) < len(sel_runs):
                pending = True  # selection runs held by other workers
                continue
            chosen = select([done[run_key(r, out)] for r in sel_runs], suite.protocol)
            fin_runs = final_runs(suite, task, method, chosen)
            fin = queue.study(f"{stage}/final", fin_runs)
            if fin is None:
                pending = True
                continue
            if fin.user_attrs.get("vptune_selection") is None:
                fin.set_user_attr("vptune_selection", chosen)
                opts_text = "".join(f" {k}={v}" for k, v in chosen["options"].items())
                log(
                    f"{task.name} / {method.name}: selected lr={chosen['lr']} wd={chosen['wd']}{opts_text} "
                    f"({chosen['criterion']} {chosen['val_top1']:.4f}, {chosen['ties']} tied)"
                )
            extra = {"selection": chosen}
            if _take(queue, fin, suite, task, method, fin_runs, execute, counts, log, extra):
                progressed = True
                break
            if len(queue.completed(fin)) < len(fin_runs):
                pending = True
            else:
                finished.add(stage)
        if progressed:
            continue
        if not pending:
            return counts
        counts["waited"] += 1
        time.sleep(opts.poll_s)


def _take(
    queue: RunQueue,
    study: Any,
    suite: Suite,
    task: TaskInfo,
    method: MethodSpec,
    runs: list[RunSpec],
    execute: Execute,
    counts: dict[str, int],
    log: Log,
    extra: dict[str, Any],
) -> bool:
    """Claim one run of ``study`` and do it; False when none is waiting."""
    claimed = queue.claim(study)
    if claimed is None:
        return False
    trial_id, _number, key = claimed
    run = next(r for r in runs if run_key(r, queue.out) == key)
    stop = queue.heartbeat(trial_id)
    try:
        record = read_result(run.folder(queue.out))
        if record is None:
            record = execute(task, method, run, extra)
            counts["trained"] += 1
        else:
            counts["skipped"] += 1
    except BaseException:
        stop()
        queue.give_up(study, trial_id, key)
        raise
    stop()
    queue.complete(trial_id, score_of(record), summary_of(record))
    return True
