"""Experiment loggers selected by ``train.logger``: ``jsonl`` (default), ``csv`` or ``tensorboard``.

``metrics.jsonl`` is always written (it is the run folder's record: resume, bench and reports read it); ``csv``
adds ``metrics.csv`` and ``params.csv``, ``tensorboard`` adds event files under ``tensorboard/`` (open them with
``tensorboard --logdir OUT``). Every logger gets the same records: per epoch the train loss, top-1, lr,
images/s and seconds (step = epoch), the validation metrics when validated, the test metrics at the end, and
the parameter summary once at the start. A resumed run replaces what the crashed one logged after its last
checkpoint (CSV rows by split and epoch; TensorBoard's ``purge_step``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from .io import atomic_write
from .metrics import JsonlLogger

__all__ = ["CSV_COLUMNS", "CsvLogger", "RunLogger", "TensorBoardLogger", "build_logger", "rows_of"]

CSV_COLUMNS = ("epoch", "step", "split", "loss", "top1", "top5", "lr", "images_per_s", "seconds", "n")


def rows_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A trainer record -> flat rows ``{epoch, step, split, loss, top1, ...}`` (one per split it holds).

    Epoch records (``{"epoch", "step", "train": {...}, "val": {...}}``) give a train row and a val row; a test
    record (``{"split": "test", ...}``) gives one row.
    """
    if "split" in record:
        return [{**{k: v for k, v in record.items() if k in CSV_COLUMNS}, "split": record["split"]}]
    rows = []
    for split in ("train", "val"):
        if split in record:
            values = {k: v for k, v in record[split].items() if k in CSV_COLUMNS}
            rows.append({**values, "epoch": record.get("epoch"), "step": record.get("step"), "split": split})
    return rows


class CsvLogger:
    """``metrics.csv`` (one row per split and epoch, :data:`CSV_COLUMNS`) and ``params.csv`` (name, value)."""

    def __init__(self, out: Path, resume_epoch: int = 0) -> None:
        self.path, self.params_path = out / "metrics.csv", out / "params.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file() and resume_epoch:  # keep what the checkpoint covers, drop later rows
            with self.path.open(newline="") as f:
                kept = [
                    r for r in csv.DictReader(f) if r.get("split") != "test" and _int(r.get("epoch")) <= resume_epoch
                ]
            self.rows = kept
        self._write()

    def log(self, **record: Any) -> None:
        new = rows_of(record)
        keys = {(r["split"], str(r.get("epoch", ""))) for r in new}
        self.rows = [r for r in self.rows if (r["split"], str(r.get("epoch", "") or "")) not in keys] + new
        self._write()

    def log_params(self, summary: dict[str, Any]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "value"])
        for name, value in _flat(summary).items():
            writer.writerow([name, value])
        atomic_write(self.params_path, lambda tmp: Path(tmp).write_text(buf.getvalue()))

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(buf.getvalue()))

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars ``{split}/{metric}`` per epoch and the parameter summary (scalars ``params/*`` and a text)."""

    def __init__(self, out: Path, resume_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            from ..errors import ConfigError

            raise ConfigError(
                f"train.logger: tensorboard needs the tensorboard package ({err}): pip install tensorboard, "
                "or use --set train.logger=csv"
            ) from None
        # purge_step: events a crashed run wrote after its last checkpoint are discarded when it resumes
        self.writer = SummaryWriter(
            log_dir=str(out / "tensorboard"), purge_step=resume_epoch + 1 if resume_epoch else None
        )

    def log(self, **record: Any) -> None:
        for row in rows_of(record):
            step = int(row.get("epoch") or 0) if row["split"] != "test" else int(record.get("epoch") or 0)
            for key in ("loss", "top1", "top5", "lr", "images_per_s"):
                if isinstance(row.get(key), (int, float)):
                    self.writer.add_scalar(f"{row['split']}/{key}", float(row[key]), step)
        self.writer.flush()

    def log_params(self, summary: dict[str, Any]) -> None:
        flat = _flat(summary)
        for name, value in flat.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"params/{name}", float(value), 0)
        self.writer.add_text("params", "\n".join(f"    {k}: {v}" for k, v in flat.items()), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLogger:
    """``metrics.jsonl`` plus the extra logger ``train.logger`` names; only the main process writes."""

    def __init__(self, jsonl: JsonlLogger, extra: CsvLogger | TensorBoardLogger | None = None) -> None:
        self.jsonl, self.extra = jsonl, extra

    def log(self, **record: Any) -> None:
        self.jsonl.log(**record)
        if self.extra is not None:
            self.extra.log(**record)

    def log_params(self, summary: dict[str, Any]) -> None:
        """The parameter summary (metrics.jsonl leaves it out: task.json holds it)."""
        if self.extra is not None:
            self.extra.log_params(summary)

    def close(self) -> None:
        if self.extra is not None:
            self.extra.close()


def build_logger(kind: str, out: Path, enabled: bool, resume_epoch: int = 0) -> RunLogger:
    """The run's logger: ``kind`` is ``train.logger``; ``resume_epoch`` the epochs a checkpoint already holds."""
    jsonl = JsonlLogger(out / "metrics.jsonl" if enabled else None)
    if not enabled or kind == "jsonl":
        return RunLogger(jsonl)
    extra = CsvLogger(out, resume_epoch) if kind == "csv" else TensorBoardLogger(out, resume_epoch)
    return RunLogger(jsonl, extra)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
