"""Finding parameters by module structure (never by name substrings)."""

from __future__ import annotations

from torch import nn


def bias_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Every ``bias`` parameter of every submodule (Linear, Conv, LayerNorm, ...)."""
    out = []
    for sub in module.modules():
        bias = getattr(sub, "bias", None)
        if isinstance(bias, nn.Parameter):
            out.append(bias)
    return out


def unfreeze_biases(module: nn.Module) -> int:
    """Make every bias of ``module`` trainable (BitFit); returns how many values that is."""
    params = bias_parameters(module)
    for p in params:
        p.requires_grad_(True)
    return sum(p.numel() for p in params)


def mark_trainable(module: nn.Module) -> nn.Module:
    """Flag a module injected into a frozen backbone so that ``AdaptedModel.train()`` switches its mode."""
    module.vptune_trainable = True
    return module
