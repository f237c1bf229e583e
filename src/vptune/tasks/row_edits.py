"""Per-sample edits of the shared backbone: how tasks that change backbone modules share one pass.

A LoRA, BitFit (bias) or adapter task changes the output ``y`` of some backbone modules by an addition that
depends only on that module's input ``x`` and output ``y`` for the same sample:

    LoRA      y = W x + b            + s * B (A x)          (Linear layers)
    bias      y = W x + b            + (b_task - b)         (Linear, LayerNorm, Conv2d)
    adapter   y = mlp(x)             + up(act(down(y)))     (each block's MLP)

So samples of many such tasks (and of prompt tasks) can share one pass: a forward hook on each edited module
of the shared backbone adds each task's term to the rows (dim 0) of that task's samples only, as PEFT's
mixed-adapter batches do for LoRA. The hooks live only while :func:`per_sample_edits` is open. Rows must be
samples, so these tasks do not run in the packed pass (whose rows are tokens).

A task's tensors are loaded by its own loader on a structural copy of the backbone (:func:`structural_copy`)
whose tensors are the shared backbone's own, except those the artifact holds, which are private copies (the
load writes only into them); the task's edits are then taken out of the copy, and the copy dropped.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Protocol

import torch
from torch import nn

from ..backbones import Backbone

Edit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``edit(x, y)``: the term added to a module's output ``y`` (rows of one task) for its input ``x``."""


class RowEdits(Protocol):
    """A task's per-sample edits (:class:`~vptune.tasks.lora_bank.LoraWeights`, ...)."""

    def edits(self, arch: Backbone) -> list[tuple[nn.Module, Edit]]:
        """``(module of the shared backbone, edit)`` pairs."""


def structural_copy(module: nn.Module, private: Sequence[str] = ()) -> nn.Module:
    """A copy of ``module``'s module tree that holds the very same parameter and buffer tensors (no new memory
    for them), except the tensors named in ``private`` (state-dict names), which are copied: loading a task into
    the copy then never writes into ``module``, and wrapping its submodules leaves ``module`` untouched."""
    named = dict(itertools.chain(module.named_parameters(), module.named_buffers()))
    own = {id(named[n]) for n in private if n in named}
    memo = {id(t): t for t in named.values() if id(t) not in own}
    return copy.deepcopy(module, memo)


def _apply(parts: list[tuple[int, int, Edit]], module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: add each task's edit to its rows ``start..start + count`` of the output (dim 0)."""
    x = args[0]
    for start, count, edit in parts:
        rows = slice(start, start + count)
        output[rows] += edit(x[rows], output[rows])  # (count, ...)
    return output


@contextmanager
def per_sample_edits(arch: Backbone, rows: Sequence[tuple[int, int, RowEdits | None]]) -> Iterator[None]:
    """While open, the shared backbone adds each task's edits to its own rows of the batch.

    Args:
        arch: The shared backbone.
        rows: ``(start, count, edits)`` per task segment of the batch (dim 0); None: no edits.
    """
    handles = []
    try:
        modules: dict[int, tuple[nn.Module, list]] = {}
        for start, count, task in rows:
            for module, edit in task.edits(arch) if task is not None else ():
                modules.setdefault(id(module), (module, []))[1].append((start, count, edit))
        for module, parts in modules.values():
            handles.append(module.register_forward_hook(partial(_apply, parts)))
        yield
    finally:
        for handle in handles:
            handle.remove()
