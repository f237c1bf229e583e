"""Optimiser and learning-rate schedule: SGD or AdamW, linear warmup then cosine, stepped per iteration."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_weight_decay
from torch import nn

from ..config import OptimConfig


def effective_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The learning rate actually used: ``lr * batch / 256`` under the paper's scaling rule."""
    return cfg.lr * batch_size / 256 if cfg.scale_lr else cfg.lr


def build_optimizer(model: nn.Module, cfg: OptimConfig, batch_size: int) -> torch.optim.Optimizer:
    """Optimiser over trainable parameters; biases and 1-d tensors (norms, head bias) get no weight decay."""
    groups = param_groups_weight_decay(model, cfg.weight_decay)
    lr = effective_lr(cfg, batch_size)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Multiplier for step s (0-based): linear ramp over ``warmup_steps``, then cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration LambdaLR; call ``step()`` after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
