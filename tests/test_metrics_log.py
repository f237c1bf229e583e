"""metrics.jsonl survives crashes and resumes: no torn line, no epoch twice."""

from __future__ import annotations

import json

from vptune.engine.metrics import JsonlLogger


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_torn_last_line_is_dropped_on_open(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "loss": 0.5}\n{"epoch": 2, "lo')  # killed mid-write
    JsonlLogger(path).log(epoch=2, loss=0.4)
    assert lines(path) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]


def test_an_epoch_rerun_after_resume_replaces_its_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = JsonlLogger(path)
    first.log(epoch=1, loss=0.5)
    first.log(epoch=2, loss=0.4)  # logged, then killed before the epoch-2 checkpoint
    resumed = JsonlLogger(path)
    resumed.log(epoch=2, loss=0.4)
    resumed.log(split="test", top1=0.9)
    JsonlLogger(path).log(split="test", top1=0.9)  # killed before the artifact: test runs again
    assert lines(path) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}, {"split": "test", "top1": 0.9}]
    assert oct(path.stat().st_mode & 0o777) != "0o600"


def test_records_without_a_key_are_appended(tmp_path):
    log = JsonlLogger(tmp_path / "m.jsonl")
    log.log(note="a")
    log.log(note="a")
    assert len(lines(tmp_path / "m.jsonl")) == 2
    JsonlLogger(None).log(epoch=1)  # disabled logger: no file, no error
