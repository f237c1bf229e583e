"""The segmentation head on an :class:`~vptune.model.AdaptedModel`: which methods fit, and the forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backbones import BackboneInfo
from ..errors import ConfigError
from ..methods import Method
from .decoder import SegmentationHead

# methods whose head or pooled features are the point of the method: no dense map to decode
POOLED_ONLY = {"mlp": "its MLP head reads pooled features", "sidetune": "its side network adds to pooled features"}


def check_method(method: Method, info: BackboneInfo) -> None:
    """Refuse combinations that can not segment, with the reason and what to use instead."""
    why = POOLED_ONLY.get(method.name)
    if why is None and method.reads_images_after_pool:
        why = "it edits pooled features"
    if why is None and getattr(method.config, "init", None) == "class-prototype":
        why = "class-prototype init averages class tokens per image label (segmentation labels are masks)"
    if why:
        raise ConfigError(
            f"method '{method.name}' can not train a segmentation task: {why}. Use linear, bias, vpt-shallow, "
            "vpt-deep, full, lora or adapter"
        )
    if info.family != "vit":
        raise ConfigError(
            f"segmentation needs a ViT backbone (patch tokens on a fixed grid); '{info.name}' is a {info.family} "
            "backbone"
        )


def build_seg_head(method: Method, info: BackboneInfo, num_classes: int, decoder: dict[str, Any]) -> SegmentationHead:
    """SETR-PUP head for ``method`` on ``info``'s backbone; ``decoder``: channels, num_convs, aux_layers."""
    check_method(method, info)
    aux = [int(i) for i in decoder.get("aux_layers", [])]
    bad = [i for i in aux if not 0 <= i < info.depth]
    if bad:
        raise ConfigError(f"seg.aux_layers: {bad} are not blocks of '{info.name}' (0..{info.depth - 1})")
    return SegmentationHead(
        info.embed_dim,
        num_classes,
        info.patch_size,
        channels=int(decoder.get("channels", 256)),
        num_convs=int(decoder.get("num_convs", 4)),
        aux_layers=aux,
    )


def segment(model: nn.Module, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Images (B, C, H, W) -> logits (B, K, H, W); in training with auxiliary heads, (logits, [aux logits]).

    The auxiliary heads read the patch tokens leaving their block (prompts dropped), through the same block
    loop (:meth:`AdaptedModel.forward_blocks`) run in consecutive segments.
    """
    head: SegmentationHead = model.head
    size = (int(images.shape[-2]), int(images.shape[-1]))
    aux_layers = head.aux_layers if model.training else []
    if not aux_layers:
        return head(model.forward_dense(images), size)
    arch, prompts = model.arch, model.method.prompt_tokens
    x, start, aux = model.embed(images), 0, []
    for layer in aux_layers:
        x = model.forward_blocks(x, start, layer + 1)
        aux.append(head.aux[str(layer)](arch.dense(x, prompts), size))
        start = layer + 1
    x = model.forward_blocks(x, start)
    return head(arch.dense(arch.finish(x), prompts), size), aux


def seg_loss(
    output: torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]],
    labels: torch.Tensor,
    aux_weight: float,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pixel cross-entropy (ignore = -100) of the main logits plus ``aux_weight`` x each auxiliary head's."""
    main, aux = output if isinstance(output, tuple) else (output, [])
    loss = nn.functional.cross_entropy(main.float(), labels, reduction=reduction)
    for logits in aux:
        loss = loss + aux_weight * nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)
    return loss
