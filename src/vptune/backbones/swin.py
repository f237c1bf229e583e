"""The timm Swin Transformer family (swin_*) behind the backbone interface, with VPT's prompted windows.

Features between blocks are tokens ``(B, p + h * w, C_s)``: p prompt tokens (none without a prompt method)
first, then the stage's patch grid row-major. A block without prompts is timm's own block. A block with
prompts is composed from the block's public modules (``norm1``, ``attn.qkv``, the relative-position bias
table, ``attn.proj``, ``norm2``, ``mlp``, the shift mask) and timm's ``window_partition``/``window_reverse``,
following VPT's official Swin semantics:

- the prompts are copied into every window, which attends over ``p + window area`` tokens; the
  relative-position bias and the shift mask get zero rows and columns for the prompts;
- each prompt's output is the mean of its copies over the windows of its image;
- residual, ``norm2`` and the MLP apply to prompts like to patches;
- at patch merging (timm runs it at the start of stages 2..4) the prompts are tiled 4x along channels, then
  pass the merging's frozen norm and reduction.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer, window_partition, window_reverse
from torch import nn

from .interface import Backbone, BackboneInfo, PatchEmbedSeams, Stage, TokenLayout, register_family
from .vit import pool_tokens


def prompted_window_attention(attn: nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None, p: int) -> torch.Tensor:
    """timm ``WindowAttention`` over windows whose first ``p`` tokens are prompts.

    Args:
        attn: The block's frozen ``WindowAttention``.
        tokens: (B * nW, p + N, C), N the window area.
        mask: The shift mask (nW, N, N) of 0 / -100, or None.
        p: Prompt tokens at the front of each window.
    """
    bw, length, _ = tokens.shape
    heads, area = attn.num_heads, attn.window_area
    qkv = attn.qkv(tokens).reshape(bw, length, 3, heads, -1).permute(2, 0, 3, 1, 4)  # (3, B * nW, heads, L, hd)
    q, k, v = qkv.unbind(0)
    table = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]  # (N * N, heads)
    bias = table.view(area, area, heads).permute(2, 0, 1)  # (heads, N, N)
    bias = F.pad(bias, (p, 0, p, 0)).unsqueeze(0)  # (1, heads, L, L): prompt rows and columns get 0
    if mask is not None:
        windows = mask.shape[0]
        mask = F.pad(mask, (p, 0, p, 0))  # (nW, L, L)
        bias = bias.unsqueeze(1) + mask.view(1, windows, 1, length, length)  # (1, nW, heads, L, L)
        bias = bias.expand(bw // windows, -1, -1, -1, -1).reshape(bw, heads, length, length)
    drop = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=attn.scale)
    out = out.transpose(1, 2).reshape(bw, length, -1)  # (B * nW, L, heads * hd)
    return attn.proj_drop(attn.proj(out))


def prompted_windows(
    block: nn.Module, patches: torch.Tensor, prompts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Shifted) window attention of one Swin block with prompts copied into every window.

    Args:
        block: timm ``SwinTransformerBlock``.
        patches: Normalised patches (B, H, W, C).
        prompts: Normalised prompts (B, p, C).

    Returns:
        The attention output of the patches (B, H, W, C) and of the prompts (B, p, C), averaged over windows.
    """
    b, h, w, c = patches.shape
    p = prompts.shape[1]
    (wh, ww), (sh, sw) = block.window_size, block.shift_size
    shifted = torch.roll(patches, shifts=(-sh, -sw), dims=(1, 2)) if (sh or sw) else patches
    shifted = F.pad(shifted, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))  # (B, Hp, Wp, C)
    hp, wp = shifted.shape[1], shifted.shape[2]
    windows = window_partition(shifted, (wh, ww)).view(-1, wh * ww, c)  # (B * nW, N, C), image-major
    nw = windows.shape[0] // b
    copies = prompts.unsqueeze(1).expand(b, nw, p, c).reshape(b * nw, p, c)  # each image's prompts, every window
    mask = block.get_attn_mask(shifted) if getattr(block, "dynamic_mask", False) else block.attn_mask
    out = prompted_window_attention(block.attn, torch.cat([copies, windows], dim=1), mask, p)  # (B * nW, p + N, C)
    prompt_out = out[:, :p].reshape(b, nw, p, c).mean(dim=1)  # (B, p, C)
    merged = window_reverse(out[:, p:].reshape(-1, wh, ww, c), (wh, ww), hp, wp)[:, :h, :w]  # (B, H, W, C)
    if sh or sw:
        merged = torch.roll(merged, shifts=(sh, sw), dims=(1, 2))
    return merged, prompt_out


def swin_block(block: nn.Module, grid: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
    """One Swin block on tokens (B, p + H * W, C); p = 0 runs timm's own block."""
    b, length, c = x.shape
    h, w = grid
    p = length - h * w
    if p == 0:
        return block(x.view(b, h, w, c)).reshape(b, h * w, c)
    y = block.norm1(x)
    patches, prompt_out = prompted_windows(block, y[:, p:].reshape(b, h, w, c), y[:, :p])
    x = x + block.drop_path1(torch.cat([prompt_out, patches.reshape(b, h * w, c)], dim=1))
    return x + block.drop_path2(block.mlp(block.norm2(x)))


def merge_patches(merging: nn.Module, grid: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
    """timm ``PatchMerging`` on tokens (B, p + H * W, C) -> (B, p + H/2 * W/2, C'); prompts tiled 4x first."""
    b, length, c = x.shape
    h, w = grid
    p = length - h * w
    patches = merging(x[:, p:].reshape(b, h, w, c)).flatten(1, 2)  # (B, H/2 * W/2, C')
    if p == 0:
        return patches
    prompts = merging.reduction(merging.norm(x[:, :p].repeat(1, 1, 4)))  # (B, p, 4C) -> (B, p, C')
    return torch.cat([prompts, patches], dim=1)


@register_family
class TimmSwin(PatchEmbedSeams, Backbone):
    """Stages of windowed blocks over ``[prompts +] h * w`` tokens, patch merging between stages, no CLS."""

    family = "swin"
    token_prompts = True
    masked_attention = False  # a mixed-task batch can not pad prompts per window: Swin tasks run isolated

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        return isinstance(module, SwinTransformer)

    def _blocks(self) -> list[tuple[int, int]]:
        """(stage, block-in-stage) of every block, in forward order."""
        return [(s, j) for s, layer in enumerate(self.module.layers) for j in range(len(layer.blocks))]

    def describe(self) -> BackboneInfo:
        swin, pe = self.module, self.module.patch_embed
        dims = tuple(int(layer.blocks[j].dim) for layer in swin.layers for j in range(len(layer.blocks)))
        return BackboneInfo(
            name=self.name,
            embed_dim=int(swin.num_features),
            depth=len(dims),
            num_prefix_tokens=0,
            patch_size=(int(pe.patch_size[0]), int(pe.patch_size[1])),
            in_chans=int(pe.proj.in_channels),
            num_patches=int(pe.num_patches),
            num_params=sum(p.numel() for p in swin.parameters()),
            block_dims=dims,
            input_size=self.input_size(),
            family=self.family,
        )

    def stages(self) -> list[Stage]:
        out, start = [], 0
        for layer in self.module.layers:
            first = layer.blocks[0]
            grid = (int(first.input_resolution[0]), int(first.input_resolution[1]))
            out.append(Stage(start, start + len(layer.blocks), TokenLayout(0, grid, int(first.dim))))
            start += len(layer.blocks)
        return out

    def block(self, index: int) -> nn.Module:
        s, j = self._blocks()[index]
        return self.module.layers[s].blocks[j]

    def transition(self, index: int) -> nn.Module | None:
        s, j = self._blocks()[index]
        merging = self.module.layers[s].downsample
        return None if j or isinstance(merging, nn.Identity) else merging

    def default_output(self) -> str:
        """The official Swin output: average over all final tokens, prompts included (timm's avg pool at p = 0)."""
        return "global-pool"

    def embed(self, images: torch.Tensor, insert: torch.Tensor | None = None) -> torch.Tensor:
        if insert is not None:
            raise ValueError("the Swin family takes no inserted tokens at the embedding")
        return self.module.patch_embed(images).flatten(1, 2)  # (B, H, W, C) -> (B, H * W, C)

    def block_step(self, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Block ``index`` on tokens (B, p + H * W, C): prompts copied into every window (see :func:`swin_block`)."""
        block = self.block(index)
        return partial(swin_block, block, (int(block.input_resolution[0]), int(block.input_resolution[1])))

    def enter_stage(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """The stage's patch merging, prompts included (tiled 4x, then the merging's norm and reduction)."""
        layer = self.module.layers[stage]
        if isinstance(layer.downsample, nn.Identity):
            return x
        return merge_patches(layer.downsample, tuple(layer.input_resolution), x)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.norm(x)

    def pool(self, x: torch.Tensor, output: str, num_prompts: int = 0) -> torch.Tensor:
        return pool_tokens(x, output, 0, num_prompts)

    def dense(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        h, w = self.stages()[-1].layout.grid
        patches = x[:, num_prompts:]  # (B, h * w, C)
        return patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # (B, C, h * w) -> (B, C, h, w)

    def final_norms(self) -> list[nn.Module]:
        return [self.module.norm]
