"""BitFit (bias) and adapter tasks on the bank's shared backbone: per-sample edits, no private backbone copy.

A bias task changes only bias terms, so each changed module's output is the shared module's plus the constant
``b_task - b_shared`` (:class:`BiasDeltas`); an adapter task adds ``up(act(down(y)))`` to the output ``y`` of each
block's frozen MLP (:class:`AdapterWeights`). Both are applied per sample by :func:`~.row_edits.per_sample_edits`,
like LoRA's low-rank terms (:mod:`.lora_bank`). A task whose artifact changes anything else, or a bias of a module
whose output layout is not known here, keeps a private backbone copy (:func:`bank_edits` says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from ..backbones import Backbone
from ..methods import Method
from ..methods.adapter import AdapterMlp, Bottleneck
from .lora_bank import LoraWeights, only_lora_tensors
from .row_edits import Edit

BIAS_AXIS: dict[type[nn.Module], int] = {nn.Linear: -1, nn.LayerNorm: -1, nn.Conv2d: 1}
"""Module types (and subclasses, e.g. timm's LayerNorm) whose bias adds along a known output axis: features last,
or the channels of (B, C, H, W)."""

ROW_METHODS = ("lora", "bias", "adapter")
"""Methods whose tasks may run per sample on the shared backbone."""


def row_method(method: Method, arch: Backbone) -> str | None:
    """``lora``, ``bias`` or ``adapter`` when the task may run per sample on the shared backbone (a token family
    with masked attention), else None; the artifact is checked by :func:`bank_edits` once attached."""
    ok = arch.token_prompts and arch.masked_attention and method.name in ROW_METHODS
    return method.name if ok else None


def _add(delta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return delta


class BiasDeltas(nn.Module):
    """One task's bias changes: ``b_task - b_shared`` per changed module (buffers, shaped for its output)."""

    def __init__(self, deltas: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.paths = sorted(deltas)
        for k, path in enumerate(self.paths):
            self.register_buffer(f"delta_{k}", deltas[path])

    @classmethod
    def from_model(cls, shared: nn.Module, task: nn.Module, names: Sequence[str]) -> BiasDeltas | str:
        """The deltas of the backbone tensors ``names`` of ``task`` (a structural copy of ``shared`` with the
        task loaded), or why they can not be applied per sample."""
        deltas = {}
        for name in names:
            path, _, attr = name.rpartition(".")
            module = task.get_submodule(path)
            axis = next((a for t, a in BIAS_AXIS.items() if isinstance(module, t)), None)
            if attr != "bias" or axis is None:
                return f"'{name}' is not the bias of a Linear, LayerNorm or Conv2d layer"
            delta = (module.bias - shared.get_submodule(path).bias).detach()  # (C,)
            if axis == 1:
                delta = delta.view(-1, 1, 1)  # (C, 1, 1): added to (count, C, H, W)
            if delta.any():
                deltas[path] = delta
        return cls(deltas)

    def edits(self, arch: Backbone) -> list[tuple[nn.Module, Edit]]:
        """Per changed module of the shared backbone: add the bias delta."""
        module = arch.module
        return [(module.get_submodule(p), partial(_add, getattr(self, f"delta_{k}"))) for k, p in enumerate(self.paths)]


def _adapt(adapter: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return adapter(y)


class AdapterWeights(nn.Module):
    """One task's bottleneck adapters, by block index: added after the shared block's MLP."""

    def __init__(self, adapters: dict[int, Bottleneck]) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict({str(i): a for i, a in sorted(adapters.items())})

    @classmethod
    def from_model(cls, arch: Backbone, names: Sequence[str]) -> AdapterWeights | str:
        """The adapters of a model the adapter method wrapped (on a structural copy), or why the artifact's
        backbone tensors ``names`` (state-dict names of ``arch.module``) are more than them."""
        blocks = enumerate(arch.iter_blocks())
        adapters = {i: b.mlp.adapter for i, b in blocks if isinstance(getattr(b, "mlp", None), AdapterMlp)}
        own = {id(t) for a in adapters.values() for t in a.parameters()}
        tensors = dict(arch.module.named_parameters())
        extra = [n for n in names if id(tensors.get(n)) not in own]
        if extra or not adapters:
            return f"the artifact changes more than the adapters ({', '.join(extra[:3]) or 'no adapter found'})"
        return cls(adapters)

    def edits(self, arch: Backbone) -> list[tuple[nn.Module, Edit]]:
        """Per adapted block of the shared backbone: ``y -> adapter(y)`` added to its MLP's output."""
        return [(arch.block(int(i)).mlp, partial(_adapt, a)) for i, a in self.adapters.items()]


def bank_edits(kind: str, shared: Backbone, model: nn.Module, names: Sequence[str]) -> nn.Module | str:
    """The per-sample edits of a task of method ``kind`` (:data:`ROW_METHODS`) attached on a structural copy.

    Args:
        kind: The task's method name.
        shared: The bank's shared backbone.
        model: The task's AdaptedModel on the structural copy.
        names: The artifact's backbone tensor names, without the ``backbone.`` prefix.

    Returns:
        The edits module (kept by the bank), or the reason the task needs a private backbone copy.
    """
    if kind == "lora":
        full = [f"backbone.{n}" for n in names]
        ok = only_lora_tensors(model.backbone, full)
        return LoraWeights.from_model(model.arch) if ok else "the artifact changes more than LoRA matrices"
    if kind == "bias":
        return BiasDeltas.from_model(shared.module, model.backbone, names)
    return AdapterWeights.from_model(model.arch, names)
