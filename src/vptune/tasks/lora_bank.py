"""LoRA tasks on the bank's shared backbone: low-rank updates applied per sample, no private backbone copy.

A LoRA task changes ``y = W x`` of some Linear layers into ``y = W x + s * B (A x)``. The frozen ``W x`` is the
same for every task, so samples of many LoRA tasks (and of prompt tasks) can share one backbone pass: a forward
hook on each targeted Linear layer of the shared backbone adds ``s * B_t (A_t x)`` to the rows of task ``t``'s
samples only (as PEFT's mixed-adapter batches do), through :func:`~.row_edits.per_sample_edits`. The hooks live
only for the duration of one pass.

The task's tensors are loaded by the task's own loader (:func:`~vptune.tasks.artifact.attach_task`) on a
*structural* copy of the backbone whose parameters and buffers are the shared backbone's own tensors
(:func:`shallow_copy`), so loading allocates only the task's LoRA matrices and head; the copy is then dropped.
A task costs ``rank * (in + out)`` numbers per adapted layer instead of a whole backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import Backbone
from ..methods.lora import TARGET_PATHS, LoRALinear
from .row_edits import Edit, structural_copy


def only_lora_tensors(backbone: nn.Module, tensor_names: Sequence[str]) -> bool:
    """Whether the artifact's backbone tensors are exactly LoRA matrices of ``backbone``'s wrapped layers (found
    by module type, after the task was attached): nothing else in the backbone differs from the shared one."""
    lora = {
        f"backbone.{name}.{part}.weight"
        for name, module in backbone.named_modules()
        if isinstance(module, LoRALinear)
        for part in ("lora_A", "lora_B")
    }
    return {n for n in tensor_names if n.startswith("backbone.")} <= lora


def shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s module tree that holds the very same parameter and buffer tensors (no new memory
    for them); wrapping its submodules leaves ``module`` untouched (:func:`~.row_edits.structural_copy`)."""
    return structural_copy(module)


def linear_at(arch: Backbone, index: int, target: str) -> nn.Module:
    """The Linear layer ``target`` (qkv, proj, fc1, fc2) of block ``index``."""
    child, attr = TARGET_PATHS[target]
    return getattr(getattr(arch.block(index), child), attr)


class LoraWeights(nn.Module):
    """One task's low-rank matrices as buffers: ``A`` (r, in) and ``B`` (out, r) per block and target."""

    def __init__(self, pairs: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]], scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.keys = sorted(pairs)
        for index, target in self.keys:
            a, b = pairs[(index, target)]
            self.register_buffer(f"A_{index}_{target}", a)
            self.register_buffer(f"B_{index}_{target}", b)

    @classmethod
    def from_model(cls, arch: Backbone) -> LoraWeights:
        """Take the LoRA matrices out of a model whose Linear layers were wrapped by the LoRA method."""
        pairs, scales = {}, set()
        for index in range(arch.depth):
            for target in TARGET_PATHS:
                layer = linear_at(arch, index, target)
                if isinstance(layer, LoRALinear):
                    pairs[(index, target)] = (layer.lora_A.weight.detach(), layer.lora_B.weight.detach())
                    scales.add(layer.scale)
        if len(scales) != 1:
            raise ValueError(f"expected one LoRA scale over the layers, found {sorted(scales)}")
        return cls(pairs, scales.pop())

    def pair(self, index: int, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` of block ``index``'s ``target`` layer."""
        return getattr(self, f"A_{index}_{target}"), getattr(self, f"B_{index}_{target}")

    def edits(self, arch: Backbone) -> list[tuple[nn.Module, Edit]]:
        """Per adapted Linear layer of the shared backbone: ``x -> scale * B (A x)`` (:mod:`.row_edits`)."""
        return [(linear_at(arch, *key), partial(_low_rank, *self.pair(*key), self.scale)) for key in self.keys]


def _low_rank(a: torch.Tensor, b: torch.Tensor, scale: float, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``scale * B (A x)``: the LoRA term of rows ``x`` (count, ..., in) -> (count, ..., out)."""
    return scale * F.linear(F.linear(x, a), b)
