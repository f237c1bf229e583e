"""MAE ViTs (timm tag ``.mae``): the official output, mean of all non-[CLS] tokens then a fresh ``fc_norm``.

MAE's fine-tuning and VPT's official MAE backbone pool with ``global_pool``: the encoder's final norm is
dropped, every token after [CLS] (prompts included) is averaged and a freshly initialised LayerNorm (weight 1,
bias 0) follows; under prompt tuning it stays frozen at that init. timm builds the same head natively with
``global_pool='avg', fc_norm=True``; loading the ``.mae`` weights into that layout directly would leave the
encoder norm's weights unmatched, so the model is created as tagged and then switched to it.
"""

from __future__ import annotations

import copy

from torch import nn

MAE_TAG = "mae"


def is_mae(module: nn.Module) -> bool:
    """A timm ViT created under the ``.mae`` tag."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    return cfg.get("tag") == MAE_TAG


def use_mae_output(vit: nn.Module) -> nn.Module:
    """Switch a timm ViT to MAE's output in place: no final norm, avg pool after the prefix, fresh fc_norm."""
    fresh = copy.deepcopy(vit.norm)  # same class and eps as the encoder norm
    fresh.reset_parameters()
    vit.fc_norm = fresh
    vit.norm = nn.Identity()
    vit.global_pool = "avg"
    return vit
