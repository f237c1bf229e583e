"""Attention probabilities of a ViT-family :class:`~vptune.model.AdaptedModel`, and attention rollout.

The probabilities are recomputed from each block's attention input through the attention module's public parts
(``qkv``, ``q_norm``, ``k_norm``, ``num_heads``, ``head_dim``, ``scale``), in a forward hook on ``block.attn``:
``softmax(q k^T * scale)`` over every key. Nothing in timm is patched and the model's own forward (fused
attention or not) runs unchanged. Methods that edit the attention show up as they act:

* VPT-shallow / VPT-deep: prompt tokens are part of the sequence, so they are queries and keys.
* VPT-prefix (:class:`~vptune.methods.prompt_layers.PrefixAttention`): the prompts are extra keys only, placed
  before the token keys (``prefix_keys`` columns).
* LoRA on ``qkv``: its wrapped ``qkv`` computes the adapted queries and keys.

Attention rollout (Abnar & Zuidema, 2020): per layer, the head-averaged attention ``A`` (restricted to the tokens
tracked, rows renormalised), ``A' = (A + I) / 2`` for the residual connection, rows normalised, and the product
``R = A'_L ... A'_1`` across layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..model import AdaptedModel

__all__ = ["AttentionMaps", "attention_probs", "capture_attention", "rollout"]


def attention_probs(attn: nn.Module, x: torch.Tensor, extra_keys: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T * scale)`` of a timm fused-qkv attention module on its input ``x``.

    Args:
        attn: A timm ``Attention`` (or one whose ``qkv`` a method wrapped, e.g. LoRA).
        x: The attention's input (B, N, D): the block's ``norm1`` output.
        extra_keys: Tokens (B, p, D) in the same input space that act as keys only, placed first (VPT-prefix).

    Returns:
        (B, heads, N, p + N) probabilities; every row sums to 1.
    """
    b, n, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    qkv = attn.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    if extra_keys is not None:
        p = extra_keys.shape[1]
        pk = (
            attn.qkv(extra_keys.to(x.dtype)).reshape(b, p, 3, heads, head_dim)[:, :, 1].transpose(1, 2)
        )  # (B, H, p, hd)
        k = torch.cat([attn.k_norm(pk), k], dim=2)  # (B, H, p + N, hd)
    return ((q.float() * attn.scale) @ k.float().transpose(-2, -1)).softmax(dim=-1)


@dataclass
class AttentionMaps:
    """Per-block attention of one batch and the token layout needed to read it.

    Attributes:
        probs: One (B, heads, N, K) tensor per block, K = ``prefix_keys[i]`` + N.
        num_prefix: Class and register tokens at the start of the sequence.
        prompts: Prompt tokens right after them (queries and keys), per block (0 without prompt tokens).
        prefix_keys: Key-only prompt columns in front of each block's keys (VPT-prefix), per block.
        grid: The patch grid (h, w); the last h * w tokens are the patches, row-major.
    """

    probs: list[torch.Tensor]
    num_prefix: int
    prompts: list[int]
    prefix_keys: list[int]
    grid: tuple[int, int]

    def patch_start(self, layer: int) -> int:
        """Index of the first patch token in block ``layer``'s sequence."""
        return self.num_prefix + self.prompts[layer]

    def head_mean(self, layer: int) -> torch.Tensor:
        """Block ``layer``'s attention averaged over heads, token keys only: (B, N, N) (rows no longer sum to 1
        where prefix keys took a share)."""
        return self.probs[layer].mean(dim=1)[:, :, self.prefix_keys[layer] :]

    def cls_to_patches(self, layer: int) -> torch.Tensor:
        """Attention of the first prefix token ([CLS]) to each patch: (B, h, w)."""
        return self.head_mean(layer)[:, 0, self.patch_start(layer) :].reshape(-1, *self.grid)

    def prompts_to_patches(self, layer: int) -> torch.Tensor | None:
        """Mean attention of the prompt queries to each patch: (B, h, w); None without prompt tokens."""
        start = self.patch_start(layer)
        if start == self.num_prefix:
            return None
        rows = self.head_mean(layer)[:, self.num_prefix : start, start:]  # (B, p, hw)
        return rows.mean(dim=1).reshape(-1, *self.grid)

    def cls_prompt_share(self, layer: int) -> float:
        """Share of the [CLS] query's attention (batch mean) that goes to prompts: tokens and prefix keys."""
        row = self.probs[layer].mean(dim=1)[:, 0]  # (B, K)
        k0 = self.prefix_keys[layer]
        share = row[:, :k0].sum(-1) + row[:, k0 + self.num_prefix : k0 + self.patch_start(layer)].sum(-1)
        return float(share.mean())

    def image_token_attention(self) -> list[torch.Tensor]:
        """Per block, head-mean attention among the image tokens (prefix + patches), rows renormalised to 1:
        (B, T, T), T = prefix + h * w. Prompt rows and columns are dropped (deep prompts are replaced at every
        layer and prefix keys are never tokens, so only image tokens carry across layers)."""
        out = []
        for layer in range(len(self.probs)):
            start = self.patch_start(layer)
            keep = list(range(self.num_prefix)) + list(range(start, start + self.grid[0] * self.grid[1]))
            a = self.head_mean(layer)[:, keep][:, :, keep]  # (B, T, T)
            out.append(a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12))
        return out

    def rollout_cls(self) -> torch.Tensor:
        """Attention rollout of [CLS] onto the input patches: (B, h, w)."""
        r = rollout(self.image_token_attention())
        return r[:, 0, self.num_prefix :].reshape(-1, *self.grid)


def rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of per-layer (B, T, T) attentions, first layer first.

    Each layer's ``A`` becomes ``(A + I) / 2`` with rows normalised to sum to 1; the result is the product
    ``A'_L @ ... @ A'_1``: (B, T, T), row t = how much each input token reaches output token t.
    """
    if not attentions:
        raise ValueError("rollout needs at least one layer")
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype, device=attentions[0].device)
    result = None
    for a in attentions:
        a = (a + eye) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None
    return result


@torch.no_grad()
def capture_attention(model: AdaptedModel, images: torch.Tensor) -> tuple[AttentionMaps, torch.Tensor]:
    """Run ``model`` (eval mode) on ``images`` and record every block's attention probabilities.

    Returns:
        (the maps, the logits (B, num_classes)).

    Raises:
        ConfigError: The backbone is not a plain ViT (a token sequence with one attention per block).
    """
    from ..methods.prompt_layers import PrefixAttention

    arch = model.arch
    stages = arch.stages()
    if not arch.token_prompts or len(stages) != 1 or not stages[0].layout.tokens:
        raise ConfigError(
            f"attention maps need a plain ViT-family backbone (one token sequence); '{model.info.name}' is "
            f"'{arch.family}': use `vptune visualize --data` (t-SNE) for it"
        )
    probs: list[torch.Tensor] = []
    extra: list[int] = []

    def hook(module: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        x = args[0]
        if isinstance(module, PrefixAttention):
            keys = module.source(x.shape[0])  # (B, p, D): the prompts in the attention's input space
            probs.append(attention_probs(module.attn, x, keys).cpu())
            extra.append(keys.shape[1])
        else:
            probs.append(attention_probs(module, x).cpu())
            extra.append(0)

    handles = []
    for index, block in enumerate(arch.iter_blocks()):
        attn = getattr(block, "attn", None)
        inner = attn.attn if isinstance(attn, PrefixAttention) else attn
        if not all(hasattr(inner, a) for a in ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm")):
            raise ConfigError(f"block {index} of '{model.info.name}' has no timm fused-qkv attention to read")
        handles.append(attn.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        logits = model(images)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layout = stages[0].layout
    patches = layout.grid[0] * layout.grid[1]
    prompts = [p.shape[-2] - layout.num_prefix - patches for p in probs]  # prompt tokens in each block's sequence
    if min(prompts) < 0:
        raise ConfigError(
            f"attention maps: block sequences of {[p.shape[-2] for p in probs]} tokens are shorter than "
            f"{layout.num_prefix} prefix + {patches} patch tokens (method '{model.method.name}')"
        )
    return AttentionMaps(probs, layout.num_prefix, prompts, extra, layout.grid), logits
