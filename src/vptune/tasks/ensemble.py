"""Prompt ensembling at inference: several trained tasks of one method on one shared backbone.

The paper trains prompts with several seeds and averages their predictions (+2-5 points over one run). Every
member is a task artifact of the same method, backbone and classes; the backbone is loaded once, and each
member contributes only its trained tensors (prompts, head, ...), swapped in per forward with
``torch.func.functional_call`` (nothing is copied into the model, so methods that wrap backbone modules work too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.func import functional_call

from ..errors import ArtifactError, ConfigError
from ..model import AdaptedModel
from .artifact import TENSOR_FILE, TaskArtifact, attach_task, load_backbone_for, read_task

TRAINING_ONLY = ("dropout", "init", "head_init")
"""Method options that do not change the inference graph: members may differ in them."""


class _Member(nn.Module):
    """One member's trained tensors as buffers (so that ``.to(device)`` moves them), keyed like the model."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.keys = list(tensors)
        for i, key in enumerate(self.keys):
            self.register_buffer(f"t{i}", tensors[key])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {key: getattr(self, f"t{i}") for i, key in enumerate(self.keys)}


class PromptEnsemble(nn.Module):
    """One frozen backbone + method structure, several members' trained tensors; averages probabilities.

    Args:
        model: The first member's model (its structure is shared by every member).
        members: Each member's trainable tensors, keyed like ``model.trainable_state_dict()``.
        tasks: The members' parsed task files, in the same order.
    """

    def __init__(self, model: AdaptedModel, members: Sequence[dict[str, torch.Tensor]], tasks: Sequence[TaskArtifact]):
        super().__init__()
        if not members:
            raise ConfigError("ensemble: give at least one task folder")
        self.model = model
        self.members = nn.ModuleList(_Member(m) for m in members)
        self.tasks = list(tasks)
        self.classes = self.tasks[0].classes if self.tasks else [str(i) for i in range(model.num_classes)]

    def member_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits (B, K), in member order."""
        return [functional_call(self.model, m.tensors(), (images,)) for m in self.members]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> mean of the members' softmax probabilities (B, K) (probabilities, not logits)."""
        probs = [logits.float().softmax(dim=-1) for logits in self.member_logits(images)]
        return torch.stack(probs).mean(dim=0)  # (M, B, K) -> (B, K)


def _method_key(task: TaskArtifact) -> dict[str, Any]:
    return {k: v for k, v in task.method.items() if k not in TRAINING_ONLY}


def _check_member(first: TaskArtifact, task: TaskArtifact) -> None:
    """Explain why ``task`` cannot share ``first``'s backbone and structure."""
    a, b = first.backbone, task.backbone
    if (a["name"], a["hash"]) != (b["name"], b["hash"]):
        raise ArtifactError(
            f"ensemble: '{task.path}' was trained on backbone '{b['name']}' (hash {b['hash']}) but '{first.path}' on "
            f"'{a['name']}' (hash {a['hash']}); ensemble members must share one backbone"
        )
    if first.classes != task.classes:
        raise ArtifactError(
            f"ensemble: '{task.path}' has classes {task.classes[:5]}... but '{first.path}' has "
            f"{first.classes[:5]}...; ensemble members must predict the same classes in the same order"
        )
    if _method_key(first) != _method_key(task) or first.meta.get("output") != task.meta.get("output"):
        raise ArtifactError(
            f"ensemble: '{task.path}' uses method {task.method} but '{first.path}' uses {first.method}; "
            "ensemble members must use the same method and options"
        )


def _read_tensors(task: TaskArtifact, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load a member's tensors and check them against the shared model's trainable tensors."""
    path = task.path / TENSOR_FILE
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"'{path}' cannot be read ({err}); the file is damaged") from None
    if set(tensors) != set(like):
        raise ArtifactError(f"'{path}' holds tensors {sorted(set(tensors) ^ set(like))[:5]} the ensemble does not")
    for key, ref in like.items():
        if tensors[key].shape != ref.shape:
            raise ArtifactError(f"'{path}': tensor {key} has shape {tuple(tensors[key].shape)}, not {tuple(ref.shape)}")
    return {key: tensors[key].to(like[key].dtype) for key in like}


def load_ensemble(paths: Sequence[str | Path], device: str | torch.device = "cpu") -> PromptEnsemble:
    """Load task folders of one method/backbone/classes as a :class:`PromptEnsemble` in eval mode.

    Raises:
        ConfigError: No folder given.
        ArtifactError: A folder is not a task, or the members differ in backbone, classes or method.
    """
    if not paths:
        raise ConfigError("ensemble: give at least one task folder")
    tasks = [read_task(p) for p in paths]
    for task in tasks[1:]:
        _check_member(tasks[0], task)
    vit, digest = load_backbone_for(tasks[0])
    model = attach_task(tasks[0], vit, digest)
    first = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
    members = [first] + [_read_tensors(task, first) for task in tasks[1:]]
    return PromptEnsemble(model, members, tasks).to(device).eval()
