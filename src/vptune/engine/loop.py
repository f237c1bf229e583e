"""The inner training loop: one epoch of micro-batches with accumulation, AMP and (under torchrun) DDP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .distributed import SINGLE, DistContext, all_reduce_sum, no_sync


def train_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    grad_accum: int,
    label_smoothing: float,
    progress: bool,
    device: torch.device,
    autocast: Callable[[], Any],
    scaler: torch.amp.GradScaler | None,
    step: int,
    total_steps: int,
    desc: str,
    ctx: DistContext = SINGLE,
    empty: torch.Tensor | None = None,
    loss_fn: Callable[[Any, torch.Tensor, str], torch.Tensor] | None = None,
) -> tuple[dict[str, float], int]:
    """One pass over ``loader`` with gradient accumulation; returns (metrics summed over ranks, global step).

    ``grad_accum`` micro-batches make one optimiser step; ``label_smoothing`` goes to the cross-entropy;
    ``progress`` shows a bar (on the main process). No step is taken once ``step`` reaches ``total_steps``.

    Under torchrun every rank runs every micro-batch (an empty share runs ``empty``, a zero-image input) and
    its summed loss is weighted by world size / global batch count, so DDP's gradient average equals the
    one-process gradient of the global batch mean.

    ``loss_fn(output, labels, reduction)`` replaces the cross-entropy (segmentation: pixel cross-entropy plus
    auxiliary heads, :func:`vptune.seg.model.seg_loss`); labels equal to -100 never count.
    """
    model.train()
    accum, smoothing = grad_accum, label_smoothing
    loss_sum, correct, seen, skipped, n_images = 0.0, 0, 0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=(not (progress and ctx.is_main)) or None)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        images, labels = batch
        skipped += batch.skipped
        boundary = (i + 1) % accum == 0 or i + 1 == len(loader)
        if step < total_steps and (labels.numel() or ctx.enabled):
            if ctx.enabled and not labels.numel() and empty is not None:
                images = empty
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            valid = labels != -100  # segmentation: ignored pixels
            count = int(valid.sum())
            weight = ctx.world_size / max(all_reduce_sum([count], ctx, device)[0], 1) if ctx.enabled else 0
            with no_sync(model, not boundary):  # DDP: all-reduce gradients on the last micro-batch only
                with autocast():
                    output = model(images)
                    logits = output[0] if isinstance(output, tuple) else output  # (main, auxiliary outputs)
                    if ctx.enabled:
                        total = (
                            loss_fn(output, labels, "sum")
                            if loss_fn
                            else nn.functional.cross_entropy(
                                logits.float(), labels, reduction="sum", label_smoothing=smoothing
                            )
                        )
                        loss = total * weight
                    elif loss_fn:
                        loss = loss_fn(output, labels, "mean")
                    else:
                        loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
                (scaler.scale(loss / accum) if scaler else loss / accum).backward()
            loss_sum += total.item() if ctx.enabled else loss.item() * count
            correct += ((logits.argmax(1) == labels) & valid).sum().item()
            seen += count
            n_images += labels.shape[0]
        if boundary:
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
            img_s=f"{n_images / max(elapsed, 1e-9):.0f}",
        )
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen, skipped, n_images = all_reduce_sum(
        [loss_sum, correct, seen, skipped, n_images], ctx, device
    )
    metrics = {
        "loss": loss_sum / max(seen, 1),
        "top1": correct / max(seen, 1),
        "n": int(seen),
        "skipped": int(skipped),
        "seconds": elapsed,
        "images_per_s": n_images / max(elapsed, 1e-9),
        "lr": scheduler.get_last_lr()[0],
    }
    return metrics, step
