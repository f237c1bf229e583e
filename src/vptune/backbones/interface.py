"""The backbone interface: the one place that knows a model family's layout.

Everything else in vptune (the model's forward path, methods, the feature cache, the multi-task bank,
class-prototype initialisation) talks to a :class:`Backbone`, never to a timm model's attributes. A family
(timm's ViTs today; Swin, ConvNets next) is one subclass registered with :func:`register_family`; see
docs/architecture.md for how the next families plug in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

BlockHook = Callable[[torch.Tensor, int], torch.Tensor]
"""``hook(x, index) -> x``: called on the features entering block ``index`` (0-based over all stages)."""
MaskFn = Callable[[int], "torch.Tensor | None"]
"""``mask(index)``: the attention mask block ``index`` gets (None: none), read right after the block's hook."""
StepFn = Callable[[int], Callable[..., "torch.Tensor"]]
"""``step(index)``: the callable :meth:`Backbone.run_blocks` applies as block ``index`` (default: ``block_step``)."""


@dataclass(frozen=True)
class BackboneInfo:
    """Static facts about a backbone that methods size themselves from."""

    name: str
    embed_dim: int
    depth: int
    num_prefix_tokens: int
    patch_size: tuple[int, int]
    in_chans: int
    num_patches: int
    num_params: int
    family: str = "vit"
    """The backbone family (``vit``, ``swin``, ``convnet``): methods declare which ones they support."""
    block_dims: tuple[int, ...] = ()
    """Width of the features entering each block, for hierarchical families (empty: ``embed_dim`` everywhere)."""
    input_size: tuple[int, int] | None = None
    """The image size (H, W) the preprocessing produces, where the family fixes it (pixel-space prompts)."""

    def dim_at(self, index: int) -> int:
        """Width of the tokens entering block ``index``."""
        return self.block_dims[index] if self.block_dims else self.embed_dim

    @property
    def input_dim(self) -> int:
        """Width of the first block's input (C0, the patch embedding's output)."""
        return self.dim_at(0)


@dataclass(frozen=True)
class TokenLayout:
    """How the features inside one stage are laid out.

    Token families: ``(B, num_prefix + [prompts] + h * w, dim)``, prefix tokens (class, registers) first, then
    the patch grid row-major. A family without tokens (ConvNets) has ``tokens = False`` and ``(B, dim, h, w)``.
    """

    num_prefix: int
    grid: tuple[int, int]
    dim: int
    tokens: bool = True


@dataclass(frozen=True)
class Stage:
    """Blocks ``start``..``stop - 1`` (global 0-based indices) that share one :class:`TokenLayout`."""

    start: int
    stop: int
    layout: TokenLayout


class Backbone(ABC):
    """A model family's layout and forward steps, over a timm model kept as :attr:`module`.

    The wrapper holds no parameters of its own: :attr:`module` stays the ``nn.Module`` whose state-dict keys
    artifacts record, and blocks are looked up on it at every call (so methods may wrap or replace them).

    Class attributes declare what the family supports:
        family: Short name used in messages and docs.
        token_prompts: Features are token sequences with a prefix, so prompt tokens can be inserted after it.
        masked_attention: Every block accepts ``attn_mask`` (a mixed-task batch can pad and mask prompts).
    """

    family: ClassVar[str]
    token_prompts: ClassVar[bool] = False
    masked_attention: ClassVar[bool] = False

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module
        self.name = name
        self.info = self.describe()

    @classmethod
    @abstractmethod
    def accepts(cls, module: nn.Module) -> bool:
        """Whether ``module`` belongs to this family."""

    @abstractmethod
    def describe(self) -> BackboneInfo:
        """The static facts methods size themselves from."""

    # --- layout -------------------------------------------------------------------------------------------
    @abstractmethod
    def stages(self) -> list[Stage]:
        """The blocks grouped in stages, in order (one stage for a plain ViT)."""

    @abstractmethod
    def block(self, index: int) -> nn.Module:
        """Block ``index`` (0-based over all stages)."""

    @property
    def depth(self) -> int:
        """Number of blocks over all stages."""
        return self.stages()[-1].stop

    def iter_blocks(self) -> Iterator[nn.Module]:
        """The blocks in forward order (methods that attach per-block modules walk these)."""
        for index in range(self.depth):
            yield self.block(index)

    def transition(self, index: int) -> nn.Module | None:
        """The module :meth:`enter_stage` runs before block ``index`` (patch merging, downsampling), if any.

        Partial-k trains it when the block before it trains too.
        """
        return None

    def default_output(self) -> str:
        """What the head reads when a method says ``output: auto`` (a pooling name of :meth:`pool`)."""
        return "image-pool"

    # --- the forward steps ---------------------------------------------------------------------------------
    @abstractmethod
    def embed(self, images: torch.Tensor, insert: torch.Tensor | None = None) -> torch.Tensor:
        """Images (B, C, H, W) -> features entering block 0.

        Args:
            images: The input batch.
            insert: Token families only: (B, p, D) tokens placed right after the prefix tokens, without
                position embedding, before the pre-block norm (pixel-space prompts).
        """

    def run_blocks(
        self,
        x: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        *,
        before_block: BlockHook | None = None,
        attn_mask: MaskFn | None = None,
        checkpointing: bool = False,
        step: StepFn | None = None,
    ) -> torch.Tensor:
        """Run blocks ``start``..``stop - 1`` on ``x`` (the one block loop of vptune).

        Args:
            x: Features entering block ``start``.
            start: First block to run.
            stop: One past the last block to run (default: all).
            before_block: Called on the features entering each block; returns them, edited or not.
            attn_mask: Called after ``before_block``; a non-None mask is passed as ``block(x, attn_mask=...)``.
            checkpointing: Recompute each block's activations in the backward pass.
            step: ``step(index)``: the callable applied as block ``index`` instead of :meth:`block_step` (the
                packed pass of :mod:`vptune.tasks.varlen` runs each block over a list of per-task segments this
                way; the features are then whatever ``step`` and ``before_block`` agree on).
        """
        stop = self.depth if stop is None else stop
        stage_starts = {s.start: k for k, s in enumerate(self.stages()) if k}  # block index -> stage entered
        for index in range(start, stop):
            if index in stage_starts:
                x = self.enter_stage(x, stage_starts[index])
            if before_block is not None:
                x = before_block(x, index)
            block = self.block_step(index) if step is None else step(index)
            mask = attn_mask(index) if attn_mask is not None else None
            if mask is not None:
                if not self.masked_attention:
                    raise ValueError(f"{self.family} blocks take no attention mask (masked_attention = False)")
                block = partial(block, attn_mask=mask)
            x = checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)
        return x

    def block_step(self, index: int) -> Callable[..., torch.Tensor]:
        """The callable :meth:`run_blocks` applies as block ``index``: features in, features out.

        Default: the block module itself. A family whose blocks need more than the token tensor (Swin's grid and
        prompt-aware windows) returns a wrapper here, so the loop stays the same for every family.
        """
        return self.block(index)

    def enter_stage(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """Features leaving stage ``stage - 1`` -> features entering stage ``stage`` (e.g. Swin's patch merging).

        Called by :meth:`run_blocks` before the hook of a stage's first block, so a run split at any block
        index computes the same as an unsplit one. Default: unchanged (single-stage families never call it).
        """
        return x

    @abstractmethod
    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the last block -> final features (the final norm)."""

    @abstractmethod
    def pool(self, x: torch.Tensor, output: str, num_prompts: int = 0) -> torch.Tensor:
        """Final features -> the pooled pre-logit vector (B, D) a classification head reads.

        Args:
            x: Output of :meth:`finish`.
            output: ``cls``, ``image-pool``, ``prompt-pool`` or ``global-pool`` (what a family supports).
            num_prompts: Prompt tokens sitting after the prefix tokens.
        """

    @abstractmethod
    def dense(self, x: torch.Tensor, num_prompts: int = 0) -> torch.Tensor:
        """Final features -> the dense feature map (B, D, h, w) a dense head (segmentation) reads."""

    @abstractmethod
    def final_norms(self) -> list[nn.Module]:
        """Modules applied after the last block that hold parameters (partial-k trains them)."""

    # --- pixel-space seams (input projection) --------------------------------------------------------------
    def project_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel patches (p, C, ph, pw) -> tokens (p, D) through the frozen patch embedding (no position)."""
        raise ConfigError(f"backbone family '{self.family}' has no patch tokens; use a pixel-space method")

    def input_projection(self) -> nn.Module:
        """The first layer that maps pixels to features (a Conv2d for ViTs and ConvNets)."""
        raise ConfigError(f"backbone family '{self.family}' exposes no input projection")

    def set_input_projection(self, module: nn.Module) -> None:
        """Replace the input projection (e.g. by one reading extra prompt channels)."""
        raise ConfigError(f"backbone family '{self.family}' exposes no input projection")

    def input_size(self) -> tuple[int, int] | None:
        """The fixed input size (H, W), or None when the backbone accepts any size."""
        return None


FAMILIES: list[type[Backbone]] = []


def register_family(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make a backbone family available to :func:`wrap_backbone`."""
    FAMILIES.append(cls)
    return cls


def wrap_backbone(module: nn.Module, name: str) -> Backbone:
    """The :class:`Backbone` of ``module`` (the first registered family that accepts it).

    Raises:
        ConfigError: No registered family accepts the model.
    """
    for cls in FAMILIES:
        if cls.accepts(module):
            return cls(module, name)
    families = ", ".join(sorted({c.family for c in FAMILIES}))
    raise ConfigError(
        f"model.name: '{name}' ({type(module).__name__}) belongs to no supported backbone family ({families})"
    )


class PatchEmbedSeams:
    """The pixel-space seams of a family whose timm model starts with a ``patch_embed`` (ViT, Swin)."""

    module: nn.Module

    def input_projection(self) -> nn.Module:
        return self.module.patch_embed.proj

    def set_input_projection(self, module: nn.Module) -> None:
        self.module.patch_embed.proj = module

    def input_size(self) -> tuple[int, int] | None:
        size = self.module.patch_embed.img_size
        return None if size is None else (int(size[0]), int(size[1]))
