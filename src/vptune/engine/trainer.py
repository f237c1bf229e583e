"""The training run in four steps: build the run, resume, train, finish (test and write the task artifact)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data import TaskData
from ..errors import VptuneError
from ..model import AdaptedModel
from ..seg import engine as seg_engine
from ..seg.model import seg_loss
from .checkpoint import CHECKPOINT_FILE, save_checkpoint
from .device import flush_denormals
from .distributed import barrier, order_epoch
from .loop import train_epoch
from .run import Run, build_run, describe_run, plan_steps, prepare

__all__ = ["TrainResult", "describe_run", "fit", "plan_steps", "prepare", "resume"]

EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: AdaptedModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def fit(cfg: RunConfig, *, data: TaskData | None = None, on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Train, validate, test and save a task artifact into ``cfg.out``; resumes from a checkpoint there.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains on its share of each global batch and only rank
    0 prints and writes files; every rank returns the same result.

    Args:
        cfg: The run configuration.
        data: Pre-loaded data (default: resolved from ``cfg.data.spec``).
        on_epoch_end: Called on every rank as ``hook(epoch, record)`` after each epoch's checkpoint is written.
    """
    with flush_denormals(cfg.train.flush_denormal):
        run = build_run(cfg, data)
        if run.state is not None:
            resume(run, run.state)
        train(run, on_epoch_end)
        return finish(run)


def resume(run: Run, state: dict[str, Any]) -> None:
    """Load a checkpoint's trained tensors, optimiser, schedule, scaler and RNG into ``run``.

    Raises:
        VptuneError: The checkpoint's tensors are not exactly the model's trainable ones (names the missing
            and unexpected keys).
    """
    model = run.model
    expected, saved = set(model.trainable_state_dict()), set(state["model"])
    if saved != expected:
        missing, unexpected = sorted(expected - saved), sorted(saved - expected)
        raise VptuneError(
            f"checkpoint '{run.out / CHECKPOINT_FILE}' does not fit this model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}; it was written by another vptune version or method. Delete it "
            "to start this run from scratch, or use another --out"
        )
    missing, _ = model.load_state_dict(state["model"], strict=False)
    assert set(missing) == set(model.state_dict()) - expected  # exactly the frozen tensors stay as they are
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    run.start_epoch, run.step, run.history = state["epoch"] + 1, state["step"], state["history"]
    run.say(f"vptune: resuming from {run.out / CHECKPOINT_FILE} after epoch {run.start_epoch}/{run.epochs}")


def train(run: Run, on_epoch_end: EpochHook | None = None) -> None:
    """The remaining epochs: train, validate when due, log, checkpoint (rank 0) and call ``on_epoch_end``."""
    cfg, tcfg = run.cfg, run.cfg.train
    for epoch in range(run.start_epoch, run.epochs):
        order_epoch(run.train_loader, run.seed_base, epoch)  # data order depends on epoch only
        train_metrics, run.step = train_epoch(
            run.runner,
            run.train_loader,
            run.optimizer,
            run.scheduler,
            grad_accum=tcfg.grad_accum,
            label_smoothing=cfg.optim.label_smoothing,
            progress=tcfg.progress,
            device=run.device,
            autocast=run.autocast,
            scaler=run.scaler,
            step=run.step,
            total_steps=run.total_steps,
            desc=f"epoch {epoch + 1}/{run.epochs}",
            ctx=run.ctx,
            empty=run.empty,
            loss_fn=seg_loss_fn(run),
        )
        record: dict[str, Any] = {"epoch": epoch + 1, "step": run.step, "train": train_metrics}
        last, every = epoch + 1 == run.epochs, tcfg.val_every
        if run.val_split and (last or (every and (epoch + 1) % every == 0)):
            record["val"] = run.evaluate_split(run.val_split, "val")
        run.history.append(record)
        run.logger.log(**record)
        key = headline(run)
        val_txt = f", val {key} {record['val'][key]:.4f}" if "val" in record else ""
        run.say(
            f"epoch {epoch + 1}/{run.epochs}: loss {train_metrics['loss']:.4f}, train top1 "
            f"{train_metrics['top1']:.4f}{val_txt}, {train_metrics['images_per_s']:.0f} img/s"
        )
        if run.ctx.is_main:
            save_checkpoint(run.out, checkpoint_state(run, epoch))
        if on_epoch_end:
            on_epoch_end(epoch, record)


def headline(run: Run) -> str:
    """The metric a run reports per epoch: ``miou`` for segmentation, else ``top1``."""
    return "miou" if run.model.task == "segmentation" else "top1"


def seg_loss_fn(run: Run) -> Callable[[Any, torch.Tensor, str], torch.Tensor] | None:
    """Pixel cross-entropy with the auxiliary heads' (segmentation); None: the classification loss."""
    if run.model.task != "segmentation":
        return None
    weight = run.cfg.seg.aux_weight
    return lambda output, labels, reduction: seg_loss(output, labels, weight, reduction)


def checkpoint_state(run: Run, epoch: int) -> dict[str, Any]:
    """Everything :func:`resume` needs to continue after ``epoch`` exactly as an uninterrupted run."""
    return {
        "fingerprint": run.fingerprint,
        "epoch": epoch,
        "step": run.step,
        "history": run.history,
        "model": run.model.trainable_state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler else None,
        "rng": torch.get_rng_state(),
    }


def finish(run: Run) -> TrainResult:
    """Test, collect the metrics, write the task artifact (rank 0) and drop the checkpoint."""
    from ..tasks import save_task

    cfg, history = run.cfg, run.history
    metrics: dict[str, Any] = {"epochs": run.epochs, "steps": run.step}
    key = headline(run)
    if history and "val" in history[-1]:
        metrics[f"val_{key}"] = history[-1]["val"][key]
    if run.test_split and key == "miou":  # segmentation: mIoU, pixel accuracy, per-class IoU
        test = run.evaluate_split(run.test_split, "test")
        metrics.update({f"test_{k}": test[k] for k in ("miou", "pixel_acc", "per_class_iou", "mode")})
        metrics["test_n"] = test["n"]
        run.logger.log(split="test", **test)
    elif run.test_split:
        test = run.evaluate_split(run.test_split, "test")
        metrics.update({"test_top1": test["top1"], "test_loss": test["loss"], "test_n": test["n"]})
        if "top5" in test:
            metrics["test_top5"] = test["top5"]
        run.logger.log(split="test", **test)
    metrics["train_seconds"] = sum(h["train"]["seconds"] for h in history)
    metrics["skipped_images"] = sum(h["train"]["skipped"] for h in history)
    if run.ctx.is_main:
        source = {"pretrained": cfg.model.pretrained, "weights": cfg.model.weights, "img_size": cfg.model.img_size}
        save_task(
            run.out,
            run.model,
            classes=run.data.classes,
            preprocessing=run.pre,
            backbone_source=source,
            metrics=metrics,
            train_config=cfg.to_dict(),
            task_info=seg_engine.task_meta(cfg, run.data) if key == "miou" else None,
        )
        (run.out / CHECKPOINT_FILE).unlink(missing_ok=True)
    barrier(run.ctx)
    return TrainResult(model=run.model, metrics=metrics, history=history, out_dir=run.out, summary=run.summary)
