"""Trainer options beyond the paper's protocol, through timm's own implementations where timm has one.

* Mixup / CutMix: :class:`timm.data.Mixup` on each micro-batch, with :class:`timm.loss.SoftTargetCrossEntropy`.
* Gradient clipping: the global L2 norm of the trainable gradients (``torch.nn.utils.clip_grad_norm_``).
* Best-validation weights and early stopping (:class:`BestTracker`): not the paper's protocol, which trains a
  fixed schedule and keeps the last epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["BestTracker", "MixBatch", "build_mixup", "clip_gradients"]

MixBatch = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``mix(images, labels) -> (mixed images, soft targets (B, num_classes))``."""


def build_mixup(data_cfg: Any, num_classes: int, label_smoothing: float) -> MixBatch | None:
    """A batch mixer from ``data.mixup`` / ``data.cutmix`` / ``data.mixup_prob`` (None when both alphas are 0).

    timm's :class:`~timm.data.Mixup` pairs each image with its mirror in the batch and needs an even batch: an
    odd batch's last image passes unmixed with its (smoothed) one-hot target.
    """
    if not (data_cfg.mixup > 0 or data_cfg.cutmix > 0):
        return None
    from timm.data import Mixup
    from timm.data.mixup import mixup_target

    mixer = Mixup(
        mixup_alpha=data_cfg.mixup,
        cutmix_alpha=data_cfg.cutmix,
        prob=data_cfg.mixup_prob,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )

    def mix(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        even = images.shape[0] - images.shape[0] % 2
        if even == images.shape[0]:
            return mixer(images, labels)
        last = mixup_target(labels[even:], num_classes, lam=1.0, smoothing=label_smoothing)  # (1, num_classes)
        if even == 0:
            return images, last
        mixed, targets = mixer(images[:even], labels[:even])
        return torch.cat([mixed, images[even:]]), torch.cat([targets, last])

    return mix


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """timm's soft-target cross-entropy (``mean``) or its sum over the batch (``sum``, for DDP weighting)."""
    from timm.loss import SoftTargetCrossEntropy

    loss = SoftTargetCrossEntropy()(logits, targets)
    return loss * logits.shape[0] if reduction == "sum" else loss


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> float:
    """Scale the gradients so that their global L2 norm is at most ``max_norm``; returns the norm before."""
    return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))


@dataclass
class BestTracker:
    """Best validation top-1 so far and early stopping (``patience`` validations without improvement).

    An epoch improves on the best only with a strictly higher top-1 (the earliest of equal epochs is kept).
    """

    patience: int | None = None
    best_top1: float = float("-inf")
    best_epoch: int = 0
    since_best: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict)

    def update(self, epoch: int, top1: float, weights: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Record a validation of ``epoch`` (1-based); keeps a copy of ``weights()`` when it improved."""
        if top1 > self.best_top1:
            self.best_top1, self.best_epoch, self.since_best = top1, epoch, 0
            self.state = {k: v.detach().clone().cpu() for k, v in weights().items()}
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "since_best": self.since_best,
            "state": self.state,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.best_top1, self.best_epoch = float(saved["best_top1"]), int(saved["best_epoch"])
        self.since_best, self.state = int(saved["since_best"]), dict(saved["state"])
