"""Multi-process training under ``torchrun``: process group, sharded batches, synchronised metrics, DDP.

``vptune train`` needs no flag for this: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1 in the
environment) :func:`init_distributed` joins the process group, every rank trains on its share of each global
batch and only rank 0 writes. ``train.batch_size`` stays the *global* batch, so a run on N processes follows the
same trajectory as one process with the same batch (see :class:`ShardedBatchSampler`).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler, Subset

from ..data import make_loader
from ..data.loaders import collate
from ..errors import ConfigError, VptuneError
from .checkpoint import load_checkpoint
from .device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job (one process: world size 1, rank 0)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise VptuneError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


def init_distributed(
    device_name: str, backend: str = "auto", timeout_min: int = 30
) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when there is one; pick this rank's device.

    Reuses a process group that is already initialised (one per process, destroyed at exit). Without
    ``WORLD_SIZE`` > 1 nothing happens and the device is resolved as in a single-process run.

    Args:
        device_name: ``train.device`` (auto, cpu, cuda, cuda:N, mps).
        backend: ``auto`` (nccl on CUDA, gloo otherwise), ``nccl`` or ``gloo``.
        timeout_min: Timeout of collectives, in minutes.

    Returns:
        The context and the device this rank trains on (``cuda:LOCAL_RANK`` on CUDA).
    """
    world = dist.get_world_size() if dist.is_initialized() else _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE, resolve_device(device_name)
    rank = dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ConfigError("train.device: multi-process training does not support mps; use cuda or cpu")
    if not dist.is_initialized():
        chosen = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        if chosen == "nccl" and device.type != "cuda":
            raise ConfigError("train.dist_backend: nccl needs CUDA devices; use gloo (or auto) on CPU")
        dist.init_process_group(chosen, timeout=datetime.timedelta(minutes=timeout_min))
        atexit.register(_destroy)
    return DistContext(world, rank, local_rank), device


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, ctx: DistContext) -> int:
    """``train.batch_size`` is the global batch; each rank loads ``batch_size / world_size`` images."""
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size: the global batch {batch_size} does not split evenly over {ctx.world_size} "
            f"processes; use a multiple of {ctx.world_size}"
        )
    return batch_size // ctx.world_size


def global_order(n: int, seed: int) -> list[int]:
    """The sample order of the single-process training loader whose generator is seeded with ``seed``.

    It runs the same construction (a shuffling DataLoader with a seeded generator, which draws a worker seed
    before the permutation) over indices, so the order matches a one-process run exactly.
    """
    if n == 0:
        return []
    loader = DataLoader(range(n), batch_size=n, shuffle=True, generator=torch.Generator())
    loader.generator.manual_seed(seed)  # type: ignore[union-attr]
    return next(iter(loader)).tolist()


class ShardedBatchSampler(Sampler[list[int]]):
    """Each global batch of the one-process order, split over ranks (rank r takes ``batch[r::world]``).

    Unlike ``DistributedSampler`` it pads nothing and gives every rank the same number of batches (a rank's
    share of the last batch may be empty), so the union of the ranks' batches is exactly the single-process
    batch and gradients match one process with the same global batch. Call :meth:`set_epoch` every epoch.

    Args:
        n: Dataset size.
        batch_size: Global batch size.
        ctx: This process's place in the job.
        seed: Base seed; epoch e shuffles with ``seed + e`` (as the trainer seeds its one-process loader).
        shuffle: Shuffle (training) or keep the dataset order.
    """

    def __init__(self, n: int, batch_size: int, ctx: DistContext, seed: int, shuffle: bool = True) -> None:
        self.n, self.batch_size, self.ctx, self.seed, self.shuffle = n, batch_size, ctx, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Any:
        order = global_order(self.n, self.seed + self.epoch) if self.shuffle else list(range(self.n))
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size][self.ctx.rank :: self.ctx.world_size]


def shard(dataset: Any, ctx: DistContext) -> Any:
    """Rank r's share of an evaluation set: items r, r + world, ... (no padding, no duplicates)."""
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size)) if ctx.enabled else dataset


def all_reduce_sum(values: Sequence[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Sum each value over all ranks (float64); unchanged in a one-process run."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def reduce_eval(metrics: dict[str, Any], ctx: DistContext, device: torch.device) -> dict[str, Any]:
    """Combine per-shard results of :func:`vptune.engine.metrics.evaluate` into whole-split figures.

    Counts are recovered exactly from the shard's rates (``round(top1 * n)``) and summed over ranks.
    """
    if not ctx.enabled:
        return metrics
    n = metrics["n"]
    top5 = "top5" in metrics
    sums = [n, round(metrics["top1"] * n), metrics["loss"] * n, round(metrics.get("top5", 0.0) * n), metrics["skipped"]]
    n, c1, loss, c5, skipped = all_reduce_sum(sums, ctx, device)
    out = {"top1": c1 / max(n, 1), "loss": loss / max(n, 1), "n": int(n), "skipped": int(skipped)}
    if top5:
        out["top5"] = c5 / max(n, 1)
    out["seconds"] = metrics["seconds"]
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def unused_trainable_parameters(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of trainable parameters that get no gradient from one forward/backward on ``example``.

    Runs under a forked RNG and clears the gradients afterwards, so training is unaffected.
    """
    devices = [example.device] if example.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model(example).float().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device, example: torch.Tensor) -> nn.Module:
    """Wrap in DistributedDataParallel (only trainable parameters are synchronised).

    ``find_unused_parameters`` is turned on only when a probe step shows that some trainable parameter takes
    no part in the loss (it costs a graph traversal per step otherwise).
    """
    if not ctx.enabled:
        return model
    unused = unused_trainable_parameters(model, example)
    if unused and ctx.is_main:
        print(f"vptune: {len(unused)} trainable tensors unused in the loss (e.g. {unused[0]})", file=sys.stderr)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=bool(unused))


def no_sync(module: nn.Module, skip_sync: bool) -> Any:
    """DDP's ``no_sync()`` for gradient-accumulation micro-batches (``module`` may be compiled DDP)."""
    ddp = getattr(module, "module", None) if not isinstance(module, nn.parallel.DistributedDataParallel) else module
    if skip_sync and isinstance(ddp, nn.parallel.DistributedDataParallel):
        return ddp.no_sync()
    return contextlib.nullcontext()


def make_train_loader(dataset: Any, batch_size: int, ctx: DistContext, seed: int, num_workers: int = 0) -> Any:
    """The one-process shuffling loader, or under torchrun a loader over :class:`ShardedBatchSampler`.

    Args:
        dataset: Training items.
        batch_size: The global batch size.
        ctx: This process's place in the job.
        seed: Base seed of the per-epoch order (see :func:`order_epoch`).
        num_workers: DataLoader worker processes.
    """
    if not ctx.enabled:
        return make_loader(dataset, batch_size, shuffle=True, num_workers=num_workers)
    sampler = ShardedBatchSampler(len(dataset), batch_size, ctx, seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)


def order_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s data order depend on ``seed + epoch`` only (resumable, same on every rank)."""
    if isinstance(loader.batch_sampler, ShardedBatchSampler):
        loader.batch_sampler.set_epoch(epoch)
    else:
        loader.generator.manual_seed(seed + epoch)


def load_checkpoint_everywhere(out_dir: Path, fingerprint: str, ctx: DistContext) -> dict[str, Any] | None:
    """Rank 0 reads the checkpoint (or finds the error) and every rank gets the same state or error."""
    if not ctx.enabled:
        return load_checkpoint(out_dir, fingerprint)
    found: tuple[dict[str, Any] | None, str | None] = (None, None)
    if ctx.is_main:
        try:
            found = (load_checkpoint(out_dir, fingerprint), None)
        except VptuneError as err:
            found = (None, str(err))
    state, error = broadcast_object(found, ctx)
    if error:
        raise VptuneError(error)
    return state


def is_main_process() -> bool:
    """False on ranks other than 0 of a torchrun job (for callers that print outside :func:`fit`)."""
    if dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0
