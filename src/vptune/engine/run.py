"""Building a training run: everything :func:`vptune.engine.trainer.fit` needs before the first epoch.

:func:`build_run` seeds, loads data and model, reads a checkpoint (if any), runs data-dependent initialisation
on a fresh run, sets up the feature cache, loaders, optimiser and schedule, and returns them in a :class:`Run`.
"""

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
from ..seg import engine as seg_engine
from .cache import CachedTail, cache_start, cached_features
from .checkpoint import config_fingerprint
from .compile import maybe_compile
from .device import autocast_factory, seed_everything
from .distributed import (
    DistContext,
    init_distributed,
    load_checkpoint_everywhere,
    make_train_loader,
    per_rank_batch,
    reduce_eval,
    shard,
    wrap_ddp,
)
from .metrics import JsonlLogger, evaluate
from .optim import build_optimizer, build_scheduler, effective_lr


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
        task=seg_engine.resolve_task(cfg, data),
        decoder=cfg.seg.decoder_meta(),
    )
    pre = preprocessing_config(model.backbone, cfg.data.normalize, cfg.data.augment, cfg.data.interpolation)
    return model, data, pre


@dataclass
class Run:
    """A built training run: model, data, loaders, optimiser and the progress so far (epoch, step, history)."""

    cfg: RunConfig
    out: Path
    ctx: DistContext
    device: torch.device
    say: Callable[[str], None]
    autocast: Any
    amp_dtype: torch.dtype | None
    model: AdaptedModel
    data: TaskData
    pre: dict[str, Any]
    summary: dict[str, Any]
    fingerprint: str
    state: dict[str, Any] | None  # the checkpoint to resume from (None: a fresh run)
    train_loader: Any
    runner: nn.Module  # the module the loop feeds (cached tail or model, compiled / DDP-wrapped)
    evaluate_split: Callable[[str, str], dict[str, Any]]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    logger: JsonlLogger
    total_steps: int
    epochs: int
    seed_base: int
    empty: torch.Tensor
    val_split: str | None
    test_split: str | None
    start_epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def build_run(cfg: RunConfig, data: TaskData | None) -> Run:
    """Everything before the first epoch (see the module docstring); the order fixes the RNG stream."""
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
    seg = model.task == "segmentation"  # vptune.seg: joint image + mask transforms, mIoU evaluation
    train_ds = (
        seg_engine.train_dataset(cfg, data, pre, train_samples, skip)
        if seg
        else ImageDataset(train_samples, build_transform(pre, train=True), skip)
    )
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
    if state is None and not seg:  # data-dependent init (class prototypes, ...) on a fresh run
        init_ds = ImageDataset(train_samples, eval_tf, skip)
        model.method.initialize(model, make_loader(init_ds, cfg.train.batch_size, shuffle=False), device)

    seed_base, workers = cfg.train.seed * 100_003, cfg.data.num_workers
    cache_args = {"pre": pre, "device": device, "batch_size": batch, "autocast": autocast, "verbose": ctx.is_main}
    cache_args.update(max_gb=cfg.train.feature_cache_max_gb, num_workers=workers)
    start = cache_start(model) if cfg.train.feature_cache and pre["augment"] == "none" and not seg else None
    train_set = cached_features(model, train_ds, start, **cache_args) if start else None
    start = start if train_set is not None else None
    core: nn.Module = CachedTail(model, start) if start else model
    empty = torch.zeros(0, *(train_set.features.shape[1:] if train_set is not None else (3, *pre["input_size"])))
    train_loader = make_train_loader(
        train_ds if train_set is None else train_set, cfg.train.batch_size, ctx, seed_base, cfg.data.num_workers
    )
    example = torch.zeros(1, *empty.shape[1:], device=device)
    runner = maybe_compile(wrap_ddp(core, ctx, device, example), cfg.train.compile, ctx.is_main)
    eval_runner = runner if not ctx.enabled else maybe_compile(core, cfg.train.compile, False)
    val_split = cfg.data.val_split if cfg.data.val_split in data.splits else None
    test_split = cfg.data.test_split if cfg.data.test_split in data.splits else None

    seg_evaluate = seg_engine.split_evaluator(cfg, data, pre, model, device, autocast) if seg else None

    def evaluate_split(split: str, desc: str) -> dict[str, Any]:
        """Evaluate on ``split`` (cached features for train/val when caching; the test split runs images)."""
        if seg_evaluate is not None:  # every rank scores the whole split (no collective needed)
            return seg_evaluate(split, desc)
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
    return Run(
        cfg=cfg,
        out=out,
        ctx=ctx,
        device=device,
        say=say,
        autocast=autocast,
        amp_dtype=amp_dtype,
        model=model,
        data=data,
        pre=pre,
        summary=summary,
        fingerprint=fingerprint,
        state=state,
        train_loader=train_loader,
        runner=runner,
        evaluate_split=evaluate_split,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        logger=logger,
        total_steps=total_steps,
        epochs=epochs,
        seed_base=seed_base,
        empty=empty,
        val_split=val_split,
        test_split=test_split,
    )
