"""The timm Vision Transformer family (vit_*, deit_*, DINOv2, CLIP ViTs, ...) behind the backbone interface.

Composes timm's own public stages in timm's order: ``patch_embed -> _pos_embed -> patch_drop -> norm_pre ->
blocks -> norm``, then pooling and ``fc_norm`` (exactly ``forward_features`` + ``forward_head(pre_logits=True)``
when nothing is inserted).
"""

from __future__ import annotations

import torch
from torch import nn

from .interface import Backbone, BackboneInfo, PatchEmbedSeams, Stage, TokenLayout, register_family
from .mae import is_mae

# The attributes of timm's VisionTransformer this family composes its forward pass from.
VIT_SEAMS = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "num_prefix_tokens")


def pool_tokens(x: torch.Tensor, output: str, num_prefix: int, num_prompts: int) -> torch.Tensor:
    """Reduce final tokens (B, prefix + prompts + patches, D) to (B, D)."""
    if output == "cls":
        return x[:, 0]
    if output == "image-pool":
        return x[:, num_prefix + num_prompts :].mean(dim=1)
    if output == "prompt-pool":
        return x[:, num_prefix : num_prefix + num_prompts].mean(dim=1)
    if output == "global-pool":
        return x.mean(dim=1)
    if output == "mean-pool":  # every token after the prefix, prompts included (MAE's official output)
        return x[:, num_prefix:].mean(dim=1)
    raise ValueError(f"unknown output '{output}'")


@register_family
class TimmViT(PatchEmbedSeams, Backbone):
    """One stage of ``depth`` pre-norm blocks over ``prefix + patches`` tokens of width D."""

    family = "vit"
    token_prompts = True
    masked_attention = True

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        return all(hasattr(module, seam) for seam in VIT_SEAMS)

    def describe(self) -> BackboneInfo:
        vit, pe = self.module, self.module.patch_embed
        patch = pe.patch_size if isinstance(pe.patch_size, tuple) else (pe.patch_size, pe.patch_size)
        return BackboneInfo(
            name=self.name,
            embed_dim=int(vit.embed_dim),
            depth=len(vit.blocks),
            num_prefix_tokens=int(vit.num_prefix_tokens),
            patch_size=(int(patch[0]), int(patch[1])),
            in_chans=int(pe.proj.in_channels),
            num_patches=int(pe.num_patches),
            num_params=sum(p.numel() for p in vit.parameters()),
        )

    def stages(self) -> list[Stage]:
        grid = tuple(int(g) for g in self.module.patch_embed.grid_size)
        layout = TokenLayout(self.info.num_prefix_tokens, (grid[0], grid[1]), self.info.embed_dim)
        return [Stage(0, len(self.module.blocks), layout)]

    @property
    def depth(self) -> int:
        return len(self.module.blocks)

    def block(self, index: int) -> nn.Module:
        return self.module.blocks[index]

    def default_output(self) -> str:
        """MAE: mean-pool; the class token when timm pools by token, else the mean of patch tokens."""
        vit = self.module
        if is_mae(vit):
            return "mean-pool"
        return "cls" if getattr(vit, "global_pool", "token") == "token" and vit.num_prefix_tokens else "image-pool"

    def embed(self, images: torch.Tensor, insert: torch.Tensor | None = None) -> torch.Tensor:
        vit = self.module
        x = vit.patch_drop(vit._pos_embed(vit.patch_embed(images)))  # (B, n + patches, D)
        if insert is not None:
            n = vit.num_prefix_tokens
            x = torch.cat([x[:, :n], insert.to(x.dtype), x[:, n:]], dim=1)  # (B, n + p + patches, D)
        return vit.norm_pre(x)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.norm(x)

    def pool(self, x: torch.Tensor, output: str, num_prompts: int = 0) -> torch.Tensor:
        return self.module.fc_norm(pool_tokens(x, output, self.info.num_prefix_tokens, num_prompts))

    def dense(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        h, w = self.stages()[-1].layout.grid
        patches = x[:, self.info.num_prefix_tokens + num_prompts :]  # (B, h * w, D)
        if patches.shape[1] != h * w:
            raise ValueError(f"{patches.shape[1]} patch tokens do not form the {h}x{w} grid of this backbone")
        return patches.transpose(1, 2).reshape(x.shape[0], -1, h, w)  # (B, D, h * w) -> (B, D, h, w)

    def final_norms(self) -> list[nn.Module]:
        found = []
        for attr in ("norm", "fc_norm"):
            module = getattr(self.module, attr, None)
            if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
                found.append(module)
        return found

    def project_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        pe = self.module.patch_embed
        return pe.norm(pe.proj(pixels).flatten(1))  # (p, D, 1, 1) -> (p, D)
