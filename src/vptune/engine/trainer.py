"""The training run: data, model, optimiser, epochs with validation, resume, test, artifact."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..config import RunConfig
from ..data import ImageDataset, TaskData, build_transform, load_data, make_loader, preprocessing_config
from ..data.sources import subsample
from ..model import AdaptedModel, build_model
from .checkpoint import CHECKPOINT_FILE, config_fingerprint, load_checkpoint, save_checkpoint
from .device import autocast_factory, resolve_device, seed_everything
from .metrics import JsonlLogger, evaluate
from .optim import build_optimizer, build_scheduler, effective_lr

EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: AdaptedModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def plan_steps(cfg: RunConfig, batches_per_epoch: int) -> tuple[int, int, int, int]:
    """(steps_per_epoch, total_steps, epochs, warmup_steps) for the configured schedule."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.train.grad_accum))
    total = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)
    warmup = min(total, round(cfg.optim.warmup_epochs * steps_per_epoch))
    return steps_per_epoch, total, epochs, warmup


def describe_run(model: AdaptedModel, data: TaskData, cfg: RunConfig, n_train: int) -> dict[str, Any]:
    """The parameter summary printed at start and by ``--dry-run``."""
    params = model.parameter_summary()
    tensor_bytes = sum(t.numel() * t.element_size() for t in model.trainable_state_dict().values())
    return {
        "model": cfg.model.name,
        "method": model.method.config.model_dump(mode="json"),
        "num_classes": data.num_classes,
        "train_samples": n_train,
        **params,
        "artifact_tensor_bytes": tensor_bytes,
        "effective_lr": effective_lr(cfg.optim, cfg.train.batch_size * cfg.train.grad_accum),
    }


def prepare(cfg: RunConfig, data: TaskData | None = None) -> tuple[AdaptedModel, TaskData, dict[str, Any]]:
    """Seed, resolve the data and build the model (the ``--dry-run`` path stops here)."""
    seed_everything(cfg.train.seed)
    data = data or load_data(cfg.data.spec, val_fraction=cfg.data.val_fraction, seed=cfg.train.seed)
    model = build_model(
        cfg.model.name,
        cfg.method,
        data.num_classes,
        pretrained=cfg.model.pretrained,
        weights=cfg.model.weights,
        img_size=cfg.model.img_size,
    )
    pre = preprocessing_config(model.backbone, cfg.data.normalize, cfg.data.augment)
    return model, data, pre


def train_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    cfg: RunConfig,
    device: torch.device,
    autocast: Callable[[], Any],
    scaler: torch.amp.GradScaler | None,
    step: int,
    total_steps: int,
    desc: str,
) -> tuple[dict[str, float], int]:
    """One pass over ``loader`` with gradient accumulation; returns (metrics, global step)."""
    model.train()
    accum = cfg.train.grad_accum
    loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=(not cfg.train.progress) or None)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        images, labels = batch
        skipped += batch.skipped
        if labels.numel() and step < total_steps:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with autocast():
                logits = model(images)
                loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=cfg.optim.label_smoothing)
            (scaler.scale(loss / accum) if scaler else loss / accum).backward()
            loss_sum += loss.item() * labels.numel()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += labels.numel()
        if (i + 1) % accum == 0 or i + 1 == len(loader):
            if step < total_steps:
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                step += 1
            optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{loss_sum / max(seen, 1):.3f}",
            acc=f"{correct / max(seen, 1):.3f}",
            img_s=f"{seen / max(elapsed, 1e-9):.0f}",
        )
    elapsed = time.perf_counter() - start
    metrics = {
        "loss": loss_sum / max(seen, 1),
        "top1": correct / max(seen, 1),
        "n": seen,
        "skipped": skipped,
        "seconds": elapsed,
        "images_per_s": seen / max(elapsed, 1e-9),
        "lr": scheduler.get_last_lr()[0],
    }
    return metrics, step


def fit(cfg: RunConfig, *, data: TaskData | None = None, on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Train, validate, test and save a task artifact into ``cfg.out``; resumes from a checkpoint there.

    Args:
        cfg: The run configuration.
        data: Pre-loaded data (default: resolved from ``cfg.data.spec``).
        on_epoch_end: Called as ``hook(epoch, record)`` after each epoch's checkpoint is written.
    """
    from ..tasks import save_task

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    autocast, amp_dtype = autocast_factory(device, cfg.train.amp)
    model, data, pre = prepare(cfg, data)
    model.to(device).set_grad_checkpointing(cfg.train.grad_checkpointing)
    skip = cfg.data.skip_bad_images
    train_samples = subsample(data.split(cfg.data.train_split), cfg.data.train_fraction, cfg.train.seed)
    train_ds = ImageDataset(train_samples, build_transform(pre, train=True), skip)
    eval_tf = build_transform(pre, train=False)
    train_loader = make_loader(train_ds, cfg.train.batch_size, shuffle=True, num_workers=cfg.data.num_workers)

    def eval_loader(split: str) -> Any:
        ds = ImageDataset(data.split(split), eval_tf, skip)
        return make_loader(ds, cfg.train.batch_size, shuffle=False, num_workers=cfg.data.num_workers)

    summary = describe_run(model, data, cfg, len(train_ds))
    print(
        f"vptune: {cfg.method.name} on {cfg.model.name}, {data.num_classes} classes, {len(train_ds)} train images; "
        f"trainable {summary['trainable_params']:,} of {summary['backbone_params']:,} backbone params "
        f"({summary['trainable_percent']:.3f}%), artifact ~{summary['artifact_tensor_bytes'] / 1e6:.2f} MB, "
        f"device {device}{f', amp {amp_dtype}' if amp_dtype else ''}",
        file=sys.stderr,
    )
    if not (out / CHECKPOINT_FILE).is_file():  # data-dependent init (class prototypes, ...) on a fresh run
        init_ds = ImageDataset(train_samples, eval_tf, skip)
        model.method.initialize(model, make_loader(init_ds, cfg.train.batch_size, shuffle=False), device)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size * cfg.train.grad_accum)
    _, total_steps, epochs, warmup = plan_steps(cfg, len(train_loader))
    scheduler = build_scheduler(optimizer, warmup, total_steps)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    logger = JsonlLogger(out / "metrics.jsonl")
    fingerprint = config_fingerprint(cfg.to_dict())

    start_epoch, step, history = 0, 0, []
    state = load_checkpoint(out, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]
        print(f"vptune: resuming from {out / CHECKPOINT_FILE} after epoch {start_epoch}/{epochs}", file=sys.stderr)

    val_split = cfg.data.val_split if cfg.data.val_split in data.splits else None
    for epoch in range(start_epoch, epochs):
        train_loader.generator.manual_seed(cfg.train.seed * 100_003 + epoch)  # data order depends on epoch only
        train_metrics, step = train_epoch(
            model,
            train_loader,
            optimizer,
            scheduler,
            cfg=cfg,
            device=device,
            autocast=autocast,
            scaler=scaler,
            step=step,
            total_steps=total_steps,
            desc=f"epoch {epoch + 1}/{epochs}",
        )
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "train": train_metrics}
        last = epoch + 1 == epochs
        every = cfg.train.val_every
        if val_split and (last or (every and (epoch + 1) % every == 0)):
            record["val"] = evaluate(model, eval_loader(val_split), device, autocast, "val", cfg.train.progress)
        history.append(record)
        logger.log(**record)
        val_txt = f", val top1 {record['val']['top1']:.4f}" if "val" in record else ""
        print(
            f"epoch {epoch + 1}/{epochs}: loss {train_metrics['loss']:.4f}, train top1 "
            f"{train_metrics['top1']:.4f}{val_txt}, {train_metrics['images_per_s']:.0f} img/s",
            file=sys.stderr,
        )
        save_checkpoint(
            out,
            {
                "fingerprint": fingerprint,
                "epoch": epoch,
                "step": step,
                "history": history,
                "model": model.trainable_state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler else None,
                "rng": torch.get_rng_state(),
            },
        )
        if on_epoch_end:
            on_epoch_end(epoch, record)

    metrics: dict[str, Any] = {"epochs": epochs, "steps": step}
    if history and "val" in history[-1]:
        metrics["val_top1"] = history[-1]["val"]["top1"]
    test_split = cfg.data.test_split if cfg.data.test_split in data.splits else None
    if test_split:
        test = evaluate(model, eval_loader(test_split), device, autocast, "test", cfg.train.progress)
        metrics.update({"test_top1": test["top1"], "test_loss": test["loss"], "test_n": test["n"]})
        if "top5" in test:
            metrics["test_top5"] = test["top5"]
        logger.log(split="test", **test)
    metrics["train_seconds"] = sum(h["train"]["seconds"] for h in history)
    metrics["skipped_images"] = sum(h["train"]["skipped"] for h in history)
    source = {
        "pretrained": cfg.model.pretrained,
        "weights": cfg.model.weights,
        "img_size": cfg.model.img_size,
    }
    save_task(
        out,
        model,
        classes=data.classes,
        preprocessing=pre,
        backbone_source=source,
        metrics=metrics,
        train_config=cfg.to_dict(),
    )
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return TrainResult(model=model, metrics=metrics, history=history, out_dir=out, summary=summary)
