"""Packed variable-length evaluation of a mixed batch: no padding at all, block-diagonal attention.

Every sample keeps its own sequence length (``prefix + its task's prompts + patches``). The tokens of the whole
batch are packed into one (T, D) matrix for the token-wise parts of a block (norm1, norm2, the MLP, layer
scale and residuals, which hold most of the FLOPs of a ViT block), and attention, the only op mixing tokens,
runs per task segment on a ``(count, length, D)`` view with the block's own ``attn`` module: that is
block-diagonal attention over the packed tokens with neither a mask nor a padded key. Samples of one task share
one length, so a segment is rectangular and timm's attention (fused SDPA) runs on it unchanged.

The block is composed from timm ``Block``'s public attributes (``norm1``, ``attn``, ``ls1``, ``drop_path1``,
``norm2``, ``mlp``, ``ls2``, ``drop_path2``) the way ``Block.forward`` composes them, so only backbones whose
blocks are exactly timm's ViT ``Block`` qualify (:func:`packable`). The blocks run through the one block loop,
:meth:`~vptune.backbones.Backbone.run_blocks`, with this packed block as its ``step`` and a list of per-task
segments as the features. Whether it is faster than the padded passes the planner picks is measured by
``benchmarks/multitask.py`` (docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..backbones import Backbone
from ..methods import Method


def packable(arch: Backbone) -> bool:
    """Whether the packed pass computes the backbone's own blocks: a token family whose blocks are timm ``Block``
    instances (not subclasses that change the forward)."""
    return arch.token_prompts and len(arch.stages()) == 1 and all(type(b) is Block for b in arch.iter_blocks())


def packed_block(block: nn.Module, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One timm ``Block`` over per-segment features ``(count, length, D)``, token-wise ops on packed tokens."""
    dim = parts[0].shape[-1]
    shapes = [p.shape[:2] for p in parts]
    sizes = [c * n for c, n in shapes]
    x = torch.cat([p.reshape(-1, dim) for p in parts])  # (T, D): every real token of the batch, no padding
    h = block.norm1(x)
    attn = [block.attn(hs.view(c, n, dim)).reshape(-1, dim) for hs, (c, n) in zip(h.split(sizes), shapes)]
    x = x + block.drop_path1(block.ls1(torch.cat(attn)))  # (T, D)
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return [xs.view(c, n, dim) for xs, (c, n) in zip(x.split(sizes), shapes)]  # (count, length, D) each


def run_packed(arch: Backbone, x: torch.Tensor, segments: Sequence[tuple[Method, int, int]]) -> list[torch.Tensor]:
    """All blocks and the final norm over task-contiguous rows of embedded features, without padding.

    Args:
        arch: A :func:`packable` backbone.
        x: Features entering block 0, (b, prefix + patches, D), rows grouped by task in ``segments`` order.
        segments: ``(method, prompt length, count)`` per task.

    Returns:
        Per segment, its final features (count, prefix + its prompts + patches, D).
    """
    n = arch.info.num_prefix_tokens
    parts = list(x.split([count for *_, count in segments]))  # (count, n + patches, D) each
    valid = [0] * len(segments)  # prompt tokens in place per segment

    def insert(parts: list[torch.Tensor], index: int) -> list[torch.Tensor]:
        """Each segment's prompts for block ``index``: inserted (first prompted block) or replacing its own."""
        for s, (method, length, count) in enumerate(segments):
            prompts = method.prompts_for_block(index, count) if length else None  # (count, p, D)
            if prompts is not None:
                seg = parts[s]
                parts[s] = torch.cat([seg[:, :n], prompts.to(seg.dtype), seg[:, n + valid[s] :]], dim=1)
                valid[s] = length
        return parts

    # the one block loop (Backbone.run_blocks) with the packed block as its step: features are segment lists
    parts = arch.run_blocks(parts, before_block=insert, step=lambda index: partial(packed_block, arch.block(index)))
    return [arch.finish(p) for p in parts]
