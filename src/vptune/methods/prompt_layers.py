"""Building blocks of the VPT variants: the depth option, wrappers around frozen timm modules, class prototypes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BeforeValidator
from torch import nn

from ..backbones import Backbone
from ..errors import ConfigError, DataError
from .structure import mark_trainable

LAYERS_HELP = (
    "prompted layers, 1-based: 'all', 'first', 'bottom:K' (layers 1..K), 'top:K' (the last K layers) or a list "
    "such as [1, 2, 6]; the first prompted layer inserts the prompts, later prompted layers replace them"
)
LAYERS_USAGE = "use 'all', 'first', 'bottom:K', 'top:K' (K >= 1) or a list of 1-based layer indices such as [1, 2, 6]"


def _no_bare_number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(f"a bare number is ambiguous: write [{value}] for layer {value} or 'bottom:{value}'")
    return value


def _check_layer_spec(value: str | list[int]) -> str | list[int]:
    """Normalise a depth spec (syntax only; the range is checked against the backbone in :func:`resolve_layers`)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("all", "first"):
            return text
        kind, sep, count = text.partition(":")
        if sep and kind in ("bottom", "top") and count.strip().isdigit() and int(count) >= 1:
            return f"{kind}:{int(count)}"
        raise ConfigError(f"'{value}' is not a depth; {LAYERS_USAGE}")
    if not value:
        raise ConfigError(f"the list is empty; {LAYERS_USAGE}")
    if min(value) < 1:
        raise ConfigError(f"layer indices are 1-based (got {min(value)}); {LAYERS_USAGE}")
    if len(set(value)) != len(value):
        raise ConfigError(f"layer indices repeat in {value}; name each layer once")
    return sorted(value)


LayerSpec = Annotated[str | list[int], BeforeValidator(_no_bare_number), AfterValidator(_check_layer_spec)]
"""Pydantic field type of the ``layers`` option (shared by vpt-shallow, vpt-deep and vpt-prefix)."""


def resolve_layers(spec: str | list[int], depth: int) -> list[int]:
    """Turn a depth spec into sorted 0-based block indices of a ``depth``-block backbone.

    Raises:
        ConfigError: The spec asks for more layers than the backbone has (the message names the depth).
    """
    if spec == "all":
        return list(range(depth))
    if spec == "first":
        return [0]
    if isinstance(spec, str):
        kind, _, count = spec.partition(":")
        k = int(count)
        if k > depth:
            raise ConfigError(
                f"method.layers: '{spec}' asks for {k} layers but the backbone has depth {depth}; "
                f"use K between 1 and {depth}"
            )
        return list(range(k)) if kind == "bottom" else list(range(depth - k, depth))
    out_of_range = [i for i in spec if i > depth]
    if out_of_range:
        raise ConfigError(
            f"method.layers: layer {out_of_range[0]} is out of range for a backbone of depth {depth}; "
            f"use 1-based indices 1..{depth}"
        )
    return [i - 1 for i in spec]


class FrozenWrapper(nn.Module):
    """A trainable module that wraps a frozen backbone module; the wrapped module always stays in eval mode."""

    frozen_attr: str = "original"

    def train(self, mode: bool = True) -> FrozenWrapper:
        super().train(mode)
        getattr(self, self.frozen_attr).eval()
        return self


class ChannelPromptProj(FrozenWrapper):
    """Replaces ``patch_embed.proj``: p learnable input channels are concatenated to the image, and a new
    trainable Conv2d with C + p input channels (frozen weights for the first C, zeros for the rest) embeds them.

    At initialisation the output equals the frozen projection's exactly. The frozen Conv2d is kept as ``original``.
    """

    def __init__(self, original: nn.Conv2d, channels: int, image_size: tuple[int, int], dropout: float) -> None:
        super().__init__()
        if original.groups != 1:
            raise ConfigError("method.location: 'concat-channel' needs a plain (groups=1) patch-embedding Conv2d")
        self.original = original.requires_grad_(False)
        c = original.in_channels
        self.proj = nn.Conv2d(
            c + channels,
            original.out_channels,
            kernel_size=original.kernel_size,
            stride=original.stride,
            padding=original.padding,
            dilation=original.dilation,
            bias=original.bias is not None,
            padding_mode=original.padding_mode,
            device=original.weight.device,
            dtype=original.weight.dtype,
        )
        with torch.no_grad():  # weight (D, C + p, ph, pw): frozen kernel for the image channels, zeros for the new
            self.proj.weight.zero_()
            self.proj.weight[:, :c].copy_(original.weight)
            if original.bias is not None:
                self.proj.bias.copy_(original.bias)
        # (p, H, W), the range of normalised pixels; non-zero so that the zero kernel slice gets gradients
        self.channels = nn.Parameter(torch.empty(channels, *image_size, device=original.weight.device))
        nn.init.uniform_(self.channels, -1.0, 1.0)
        self.dropout = dropout
        mark_trainable(self)
        mark_trainable(self.proj)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        extra = self.channels
        if extra.shape[-2:] != images.shape[-2:]:  # another input size: resample the prompt channels
            extra = F.interpolate(extra[None], size=images.shape[-2:], mode="bilinear", align_corners=False)[0]
        extra = F.dropout(extra, self.dropout, self.training).to(images.dtype)
        x = torch.cat([images, extra.unsqueeze(0).expand(images.shape[0], -1, -1, -1)], dim=1)  # (B, C + p, H, W)
        return self.proj(x)


class PrefixAttention(FrozenWrapper):
    """Wraps a frozen timm ``Attention``: extra keys/values from prompt tokens, no extra queries, same length.

    ``source(batch)`` returns the prompt tokens (B, p, D) already in the attention's input space (after the block's
    ``norm1``); they pass through the key/value rows of the frozen ``qkv`` (and ``k_norm``), and every token
    attends over [prompt K/V ; token K/V] with ``F.scaled_dot_product_attention``.
    """

    frozen_attr = "attn"

    def __init__(self, attn: nn.Module, source: Callable[[int], torch.Tensor]) -> None:
        super().__init__()
        needed = ("qkv", "num_heads", "head_dim", "q_norm", "k_norm", "proj", "proj_drop", "attn_drop", "scale")
        missing = [a for a in needed if not hasattr(attn, a)]
        qkv = getattr(attn, "qkv", None)
        if missing or not isinstance(qkv, nn.Linear) or qkv.out_features != 3 * attn.num_heads * attn.head_dim:
            raise ConfigError(
                f"method.name: vpt-prefix needs timm's fused-qkv Attention; {type(attn).__name__} "
                f"does not fit (missing {missing or ['a fused qkv Linear']}); choose vpt-deep for this backbone"
            )
        self.attn = attn
        self.source = source  # a plain callable (not a submodule): reads the method's current prompts

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        a = self.attn
        if is_causal:
            raise ValueError("vpt-prefix does not support causal attention")
        b, n, _ = x.shape
        prefix = self.source(b)  # (B, p, D): per-image prompts (each image has its own dropout mask)
        heads, head_dim = a.num_heads, a.head_dim
        dim = heads * head_dim
        gate = a.gate(x).sigmoid() if getattr(a, "gate", None) is not None else None
        qkv = a.qkv(x).reshape(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        bias = None if a.qkv.bias is None else a.qkv.bias[dim:]
        p = prefix.shape[1]
        kv = F.linear(prefix.to(x.dtype), a.qkv.weight[dim:], bias)  # key/value rows only: (B, p, 2 * H * hd)
        kv = kv.reshape(b, p, 2, heads, head_dim).permute(2, 0, 3, 1, 4)  # (2, B, H, p, hd)
        pk, pv = a.k_norm(kv[0]), kv[1]
        k = torch.cat([pk, k], dim=2)  # (B, H, p + N, hd)
        v = torch.cat([pv, v], dim=2)  # (B, H, p + N, hd)
        if attn_mask is not None:  # the prompt keys are visible to every query
            attn_mask = F.pad(attn_mask, (p, 0), value=True if attn_mask.dtype == torch.bool else 0.0)
        drop = a.attn_drop.p if a.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop, scale=a.scale)
        x = x.transpose(1, 2).reshape(b, n, dim)  # (B, H, N, hd) -> (B, N, H * hd)
        x = getattr(a, "norm", nn.Identity())(x)
        if gate is not None:
            x = x * gate
        return a.proj_drop(a.proj(x))


@torch.no_grad()
def class_token_means(
    backbone: Backbone,
    loader: Iterable[Any],
    device: torch.device | str,
    layers: list[int],
    num_classes: int,
) -> torch.Tensor:
    """Per-class mean [CLS] token of the frozen backbone, for each prompted layer.

    For a prompted layer i > 0 (0-based) the token is the [CLS] *entering* block i. The [CLS] entering block 0 is
    the same learned vector for every image, so for layer 0 the token is the final [CLS] (output of the last
    block, before the final norm): the same token space, but image dependent.

    Args:
        backbone: The frozen backbone; its own embedding and block loop run, without prompts.
        loader: Yields (images, labels) batches (labels 0..num_classes-1).
        device: Where the backbone lives.
        layers: Prompted layers, 0-based.
        num_classes: Number of classes (K).

    Returns:
        (len(layers), K, D) float32 on the CPU.

    Raises:
        DataError: A label is out of range or a class has no training image.
    """
    entering: dict[int, torch.Tensor] = {}  # block index -> [CLS] entering it, for the current batch

    def record(x: torch.Tensor, index: int) -> torch.Tensor:
        entering[index] = x[:, 0]
        return x

    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for batch in loader:
        images, labels = batch[0], torch.as_tensor(batch[1]).long().cpu()
        if images.numel() == 0:
            continue
        if labels.min() < 0 or labels.max() >= num_classes:
            raise DataError(f"class-prototype init: label {int(labels.max())} is outside 0..{num_classes - 1}")
        x = backbone.run_blocks(backbone.embed(images.to(device)), before_block=record)
        tokens = torch.stack([x[:, 0] if i == 0 else entering[i] for i in layers])  # (L, B, D)
        tokens = tokens.double().cpu()
        if sums is None:
            sums = torch.zeros(len(layers), num_classes, tokens.shape[-1], dtype=torch.float64)
        sums.index_add_(1, labels, tokens)  # (L, K, D)
        counts += torch.bincount(labels, minlength=num_classes).double()
    empty = [c for c in range(num_classes) if counts[c] == 0]
    if sums is None or empty:
        raise DataError(f"class-prototype init: no training image of class(es) {empty[:10]}; every class needs one")
    return (sums / counts[None, :, None]).float()
