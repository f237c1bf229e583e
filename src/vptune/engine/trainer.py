"""The training run: data, model, optimiser, epochs with validation, resume, test, artifact."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from ..data import ImageDataset, TaskData, build_transform, load_data, make_loader, preprocessing_config
from ..data.sources import subsample
from ..model import AdaptedModel, build_model
from .cache import CachedTail, cache_start, cached_features
from .checkpoint import CHECKPOINT_FILE, config_fingerprint, save_checkpoint
from .compile import maybe_compile
from .device import autocast_factory, flush_denormals, seed_everything
from .distributed import (
    barrier,
    init_distributed,
    load_checkpoint_everywhere,
    make_train_loader,
    order_epoch,
    per_rank_batch,
    reduce_eval,
    shard,
    wrap_ddp,
)
from .loop import train_epoch
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
    pre = preprocessing_config(model.backbone, cfg.data.normalize, cfg.data.augment, cfg.data.interpolation)
    return model, data, pre


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
        return _fit(cfg, data, on_epoch_end)


def _fit(cfg: RunConfig, data: TaskData | None, on_epoch_end: EpochHook | None) -> TrainResult:
    from ..tasks import save_task

    out = Path(cfg.out)
    ctx, device = init_distributed(cfg.train.device, cfg.train.dist_backend, cfg.train.dist_timeout_min)
    say = (lambda msg: print(msg, file=sys.stderr)) if ctx.is_main else (lambda msg: None)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    autocast, amp_dtype = autocast_factory(device, cfg.train.amp)
    model, data, pre = prepare(cfg, data)
    model.to(device).set_grad_checkpointing(cfg.train.grad_checkpointing)
    batch, skip = per_rank_batch(cfg.train.batch_size, ctx), cfg.data.skip_bad_images
    train_samples = subsample(data.split(cfg.data.train_split), cfg.data.train_fraction, cfg.train.seed)
    train_ds = ImageDataset(train_samples, build_transform(pre, train=True), skip)
    eval_tf = build_transform(pre, train=False)
    summary = describe_run(model, data, cfg, len(train_ds))
    say(
        f"vptune: {cfg.method.name} on {cfg.model.name}, {data.num_classes} classes, {len(train_ds)} train images; "
        f"trainable {summary['trainable_params']:,} of {summary['backbone_params']:,} backbone params "
        f"({summary['trainable_percent']:.3f}%), artifact ~{summary['artifact_tensor_bytes'] / 1e6:.2f} MB, "
        f"device {device}{f', amp {amp_dtype}' if amp_dtype else ''}"
        + (f", {ctx.world_size} processes x {batch} images" if ctx.enabled else "")
    )
    fingerprint = config_fingerprint(cfg.to_dict())
    state = load_checkpoint_everywhere(out, fingerprint, ctx)
    if state is None:  # data-dependent init (class prototypes, ...) on a fresh run
        init_ds = ImageDataset(train_samples, eval_tf, skip)
        model.method.initialize(model, make_loader(init_ds, cfg.train.batch_size, shuffle=False), device)

    seed_base, workers = cfg.train.seed * 100_003, cfg.data.num_workers
    cache_args = {"pre": pre, "device": device, "batch_size": batch, "autocast": autocast, "verbose": ctx.is_main}
    cache_args.update(max_gb=cfg.train.feature_cache_max_gb, num_workers=workers)
    start = cache_start(model) if cfg.train.feature_cache and pre["augment"] == "none" else None
    train_set = cached_features(model, train_ds, start, **cache_args) if start else None
    start = start if train_set is not None else None
    core: nn.Module = CachedTail(model, start) if start else model  # the module the loop feeds
    empty = torch.zeros(0, *(train_set.features.shape[1:] if train_set is not None else (3, *pre["input_size"])))
    train_loader = make_train_loader(
        train_ds if train_set is None else train_set, cfg.train.batch_size, ctx, seed_base, cfg.data.num_workers
    )
    example = torch.zeros(1, *empty.shape[1:], device=device)
    runner = maybe_compile(wrap_ddp(core, ctx, device, example), cfg.train.compile, ctx.is_main)
    eval_runner = runner if not ctx.enabled else maybe_compile(core, cfg.train.compile, False)

    def run_eval(split: str, desc: str) -> dict[str, Any]:
        ds = ImageDataset(data.split(split), eval_tf, skip)
        feats = cached_features(model, ds, start, **cache_args) if start and split != test_split else None
        loader = make_loader(shard(ds if feats is None else feats, ctx), batch, shuffle=False, num_workers=workers)
        module = eval_runner if feats is not None or not start else model
        return reduce_eval(
            evaluate(module, loader, device, autocast, desc, cfg.train.progress and ctx.is_main), ctx, device
        )

    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size * cfg.train.grad_accum)
    _, total_steps, epochs, warmup = plan_steps(cfg, len(train_loader))
    scheduler = build_scheduler(optimizer, warmup, total_steps)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    logger = JsonlLogger(out / "metrics.jsonl" if ctx.is_main else None)

    start_epoch, step, history = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]
        say(f"vptune: resuming from {out / CHECKPOINT_FILE} after epoch {start_epoch}/{epochs}")

    val_split = cfg.data.val_split if cfg.data.val_split in data.splits else None
    test_split = cfg.data.test_split if cfg.data.test_split in data.splits else None
    for epoch in range(start_epoch, epochs):
        order_epoch(train_loader, seed_base, epoch)  # data order depends on epoch only
        train_metrics, step = train_epoch(
            runner,
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
            ctx=ctx,
            empty=empty,
        )
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "train": train_metrics}
        last = epoch + 1 == epochs
        every = cfg.train.val_every
        if val_split and (last or (every and (epoch + 1) % every == 0)):
            record["val"] = run_eval(val_split, "val")
        history.append(record)
        logger.log(**record)
        val_txt = f", val top1 {record['val']['top1']:.4f}" if "val" in record else ""
        say(
            f"epoch {epoch + 1}/{epochs}: loss {train_metrics['loss']:.4f}, train top1 "
            f"{train_metrics['top1']:.4f}{val_txt}, {train_metrics['images_per_s']:.0f} img/s"
        )
        if ctx.is_main:
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
    if test_split:
        test = run_eval(test_split, "test")
        metrics.update({"test_top1": test["top1"], "test_loss": test["loss"], "test_n": test["n"]})
        if "top5" in test:
            metrics["test_top5"] = test["top5"]
        logger.log(split="test", **test)
    metrics["train_seconds"] = sum(h["train"]["seconds"] for h in history)
    metrics["skipped_images"] = sum(h["train"]["skipped"] for h in history)
    if ctx.is_main:
        source = {"pretrained": cfg.model.pretrained, "weights": cfg.model.weights, "img_size": cfg.model.img_size}
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
    barrier(ctx)
    return TrainResult(model=model, metrics=metrics, history=history, out_dir=out, summary=summary)
