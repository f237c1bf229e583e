"""Visual Prompt Tuning (Jia et al., ECCV 2022): learnable prompt tokens inserted into a frozen ViT.

Every variant the paper studies is an option of vpt-shallow / vpt-deep (the two differ only in defaults):
depth (``layers``), ``location``, ``sharing``, ``projection_dim``, ``init`` and ``train_bias``. See
docs/methods-vpt.md for the semantics and parameter counts.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method
from .prompt_layers import LAYERS_HELP, ChannelPromptProj, LayerSpec, class_token_means, resolve_layers
from .structure import unfreeze_biases

Location = Literal["prepend", "add", "prepend-pixel", "concat-channel"]
Sharing = Literal["none", "shared-intra", "shared-inter", "shared-all"]
TOKEN_LOCATIONS = ("prepend", "add")  # prompts that live in token space (D or projection_dim wide)
INPUT_LOCATIONS = ("prepend-pixel", "concat-channel")  # prompts that live in pixel space, first layer only


class PromptConfig(MethodConfig):
    """VPT options. Defaults follow the paper's official settings."""

    prompt_length: int = Field(10, ge=0, le=4096, description="prompt tokens per prompted layer (p)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on prompts each time they are inserted")
    layers: LayerSpec = Field("first", description=LAYERS_HELP)
    location: Location = Field(
        "prepend",
        description="prepend: p tokens after the prefix tokens; add: added to the first p patch tokens; "
        "prepend-pixel: p pixel-space patches through the frozen patch embedding; concat-channel: p extra "
        "input channels with a re-learned patch embedding",
    )
    sharing: Sharing = Field(
        "none",
        description="shared-intra: one vector per layer repeated p times; shared-inter: one prompt set reused at "
        "every prompted layer; shared-all: one vector repeated and reused",
    )
    projection_dim: int | None = Field(
        None, ge=1, le=65536, description="k: prompts live in k dimensions and pass through one learned Linear(k, D)"
    )
    init: Literal["random", "class-prototype"] = Field(
        "random",
        description="random: uniform(-v, v), v = sqrt(6 / (C*ph*pw + D)); class-prototype: per-class mean [CLS] "
        "token of the frozen model (needs prompt_length = number of classes)",
    )
    train_bias: bool = Field(False, description="also train every bias of the backbone (VPT + BitFit)")

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens that sit after the prefix tokens in the final sequence."""
        return self.prompt_length if self.location in ("prepend", "prepend-pixel") else 0

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        layers = resolve_layers(self.layers, info.depth)
        loc, p = self.location, self.prompt_length
        if self.output == "prompt-pool" and self.prompt_tokens == 0:
            why = "prompt_length is 0" if p == 0 else f"location '{loc}' adds no prompt tokens to the sequence"
            raise ConfigError(f"method.output: 'prompt-pool' needs prompt tokens but {why}; use cls or image-pool")
        if loc == "add" and p > info.num_patches:
            raise ConfigError(
                f"method.prompt_length: location 'add' adds one prompt to each of the first p patch tokens, so p "
                f"must be <= {info.num_patches} patches (got {p}); lower prompt_length or use location: prepend"
            )
        if loc in INPUT_LOCATIONS:
            if layers != [0]:
                raise ConfigError(
                    f"method.layers: location '{loc}' prompts the input only; set layers: first (got "
                    f"{self.layers!r}; vpt-deep defaults to 'all': use vpt-shallow)"
                )
            if self.projection_dim is not None:
                raise ConfigError(f"method.projection_dim: location '{loc}' has pixel-space prompts; remove it")
        if loc == "concat-channel" and self.sharing != "none":
            raise ConfigError(
                f"method.sharing: location 'concat-channel' has no per-token prompts to share; set sharing: none "
                f"(got {self.sharing})"
            )
        if info.block_dims:
            self.check_hierarchical(info)
        if self.init == "class-prototype":
            if loc != "prepend" or self.sharing != "none" or self.projection_dim is not None:
                raise ConfigError(
                    "method.init: class-prototype init writes [CLS] means into prepended, unshared, unprojected "
                    f"prompts; set location: prepend, sharing: none and no projection_dim (got location {loc}, "
                    f"sharing {self.sharing}, projection_dim {self.projection_dim})"
                )
            if info.num_prefix_tokens == 0:
                raise ConfigError("method.init: class-prototype needs a backbone with a [CLS] token; use random")

    def check_hierarchical(self, info: BackboneInfo) -> None:
        """Swin: prepended prompts of each block's width, one set per prompted block (the official variants)."""
        rules = (
            ("location", self.location, self.location == "prepend", "prepend"),
            ("sharing", self.sharing, self.sharing in ("none", "shared-intra"), "none or shared-intra"),
            ("projection_dim", self.projection_dim, self.projection_dim is None, "no projection_dim"),
            ("init", self.init, self.init == "random", "random"),
        )
        for field, got, good, want in rules:
            if not good:
                raise ConfigError(
                    f"method.{field}: {got!r} is not supported on the {info.family} backbone '{info.name}' (stage "
                    f"widths differ); use {want}"
                )


class ShallowConfig(PromptConfig):
    name: Literal["vpt-shallow"] = "vpt-shallow"


class DeepConfig(PromptConfig):
    name: Literal["vpt-deep"] = "vpt-deep"
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on prompts each time they are inserted")
    layers: LayerSpec = Field("all", description=LAYERS_HELP)


def prompt_init_bound(info: BackboneInfo) -> float:
    """Xavier-style bound mirroring the patch embedding: sqrt(6 / (C * ph * pw + D0)); 0.0625 for ViT-B/16.

    D0 is the patch embedding's width (a Swin's first stage width: sqrt(6 / (3*4*4 + 128)) for Swin-B).
    """
    ph, pw = info.patch_size
    return math.sqrt(6.0 / (info.in_chans * ph * pw + info.input_dim))


class PromptTuning(Method):
    """Prompts inserted after the prefix tokens (CLS + registers), without position embedding.

    The first prompted layer inserts the prompts; later prompted layers discard the tokens at the prompt
    positions and insert their own; unprompted layers carry the tokens through. ``prompts`` holds
    (sets, tokens, width): sets = 1 when shared across layers, tokens = 1 when shared within a layer, width =
    ``projection_dim`` or D; for prepend-pixel it holds pixel patches (tokens, C, ph, pw).

    Prepended token prompts without bias training share the backbone pass of a mixed-task batch
    (:meth:`shared_pass_blocker`): the bank inserts them through :meth:`prompts_for_block`, like ``before_block``.
    """

    shares_backbone_pass = True
    families = ("vit", "swin")

    def __init__(self, config: PromptConfig, info: BackboneInfo) -> None:
        super().__init__(config, info)
        self.length = config.prompt_length
        self.location = config.location
        self.num_prefix = info.num_prefix_tokens
        self.layers = resolve_layers(config.layers, info.depth)
        self.slot = {layer: i for i, layer in enumerate(self.layers)}
        self.share_layers = config.sharing in ("shared-inter", "shared-all")
        self.share_tokens = config.sharing in ("shared-intra", "shared-all")
        self.register_parameter("prompts", None)  # p = 0 or concat-channel: no prompt tensor in the method
        self.project: nn.Linear | None = None
        self.block_prompts: nn.ParameterList | None = None  # hierarchical backbones: (tokens, D_i) per layer
        tokens = 1 if self.share_tokens else self.length
        if self.length and info.block_dims:
            bound = prompt_init_bound(info)
            self.block_prompts = nn.ParameterList(
                nn.Parameter(torch.empty(tokens, info.dim_at(layer)).uniform_(-bound, bound)) for layer in self.layers
            )
        elif self.length and self.location == "prepend-pixel":  # (tokens, C, ph, pw), range of normalised pixels
            self.prompts = nn.Parameter(torch.empty(tokens, info.in_chans, *info.patch_size))
            nn.init.uniform_(self.prompts, -1.0, 1.0)
        elif self.length and self.location in TOKEN_LOCATIONS:  # (sets, tokens, k or D)
            sets = 1 if self.share_layers else len(self.layers)
            width = config.projection_dim or info.embed_dim
            self.prompts = nn.Parameter(torch.empty(sets, tokens, width))
            bound = prompt_init_bound(info)
            nn.init.uniform_(self.prompts, -bound, bound)
            if config.projection_dim is not None:
                self.project = nn.Linear(width, info.embed_dim)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def prompt_tokens(self) -> int:
        return self.config.prompt_tokens

    def shared_pass_blocker(self) -> str | None:
        if self.location != "prepend":
            return f"its prompts use location '{self.location}' (only 'prepend' shares the backbone pass)"
        if self.config.train_bias:
            return "it trains backbone biases (train_bias)"
        return super().shared_pass_blocker()

    def attach(self, backbone: Backbone) -> None:
        if self.length and self.location != "concat-channel" and not backbone.token_prompts:
            raise ConfigError(
                f"method.location: '{self.location}' prompts are tokens after the prefix tokens, which the "
                f"'{backbone.family}' backbone family does not support; use location: concat-channel"
            )
        if self.config.train_bias:
            unfreeze_biases(backbone.module)
        if self.location == "concat-channel" and self.length:
            size = backbone.input_size()
            if size is None:
                raise ConfigError("method.location: 'concat-channel' needs a backbone with a fixed input size")
            proj = ChannelPromptProj(backbone.input_projection(), self.length, size, self.config.dropout)
            backbone.set_input_projection(proj)

    def layer_prompts(self, slot: int) -> torch.Tensor:
        """The p token-space prompts (p, D) inserted at the ``slot``-th prompted layer (before dropout)."""
        if self.block_prompts is not None:
            return self.block_prompts[slot].expand(self.length, -1)  # (p, D_i)
        prompts = self.prompts[0 if self.share_layers else slot]  # (tokens, k or D)
        if self.project is not None:
            prompts = self.project(prompts)  # (tokens, D)
        return prompts.expand(self.length, -1)  # (p, D)

    def pixel_tokens(self, backbone: Backbone, batch: int) -> torch.Tensor:
        """Pixel prompt patches through the frozen patch-embedding projection (no position embedding): (B, p, D).

        Dropout acts after expanding to the batch, so every image gets its own mask (as the official code).
        """
        pixels = self.prompts.expand(batch, self.length, -1, -1, -1)  # (B, p, C, ph, pw)
        pixels = self.dropout(pixels).flatten(0, 1)  # (B * p, C, ph, pw)
        return backbone.project_patches(pixels).unflatten(0, (batch, self.length))  # (B * p, D) -> (B, p, D)

    def embed(self, backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        if self.location != "prepend-pixel" or not self.length:
            return super().embed(backbone, images)
        tokens = self.pixel_tokens(backbone, images.shape[0])  # (B, p, D)
        return backbone.embed(images, insert=tokens)  # (B, n + p + patches, D)

    def prompts_for_block(self, index: int, batch: int) -> torch.Tensor | None:
        """Token-space prompts (batch, p, D) entering block ``index``; None when the block is not prompted."""
        slot = self.slot.get(index)
        if slot is None or self.length == 0 or self.location not in TOKEN_LOCATIONS:
            return None
        prompts = self.layer_prompts(slot).unsqueeze(0).expand(batch, -1, -1)  # (B, p, D)
        return self.dropout(prompts)  # after expanding to the batch: one mask per image (official code)

    def before_block(self, x: torch.Tensor, index: int) -> torch.Tensor:
        prompts = self.prompts_for_block(index, x.shape[0])
        if prompts is None:
            return x
        prompts = prompts.to(x.dtype)  # (B, p, D)
        n, p = self.num_prefix, self.length
        if self.location == "add":  # same length: prompts added to the first p patch tokens
            return torch.cat([x[:, :n], x[:, n : n + p] + prompts, x[:, n + p :]], dim=1)
        # the first prompted layer inserts; later ones replace the p tokens at the prompt positions
        rest = x[:, n:] if index == self.layers[0] else x[:, n + p :]
        return torch.cat([x[:, :n], prompts, rest], dim=1)  # (B, n + p + patches, D)

    def build_head(self, dim: int, num_classes: int) -> nn.Module:
        if self.config.init == "class-prototype" and self.length != num_classes:
            raise ConfigError(
                f"method.init: class-prototype init needs prompt_length = num_classes ({num_classes}); "
                f"set prompt_length: {num_classes} (got {self.length})"
            )
        return super().build_head(dim, num_classes)

    def initialize(self, model: nn.Module, loader: Any, device: torch.device) -> None:
        """Class-prototype init: prompt c of each prompted layer = mean [CLS] token of class c (frozen model).

        Layer 1 uses the final [CLS] (last block output, before the final norm); a later layer i uses the
        [CLS] entering layer i. See :func:`vptune.methods.prompt_layers.class_token_means`.
        """
        if self.config.init != "class-prototype" or self.prompts is None:
            return
        means = class_token_means(model.arch, loader, device, self.layers, model.num_classes)  # (L, K = p, D)
        with torch.no_grad():
            self.prompts.copy_(means.to(self.prompts))


@register_method
class VPTShallow(PromptTuning):
    name = "vpt-shallow"
    summary = "VPT-shallow: p prompts before the first block (paper Fig. 2a)"
    default_optim = {"optimizer": "sgd", "lr": 0.5, "weight_decay": 0.0}  # docs/default-optim.md
    config_cls = ShallowConfig


@register_method
class VPTDeep(PromptTuning):
    name = "vpt-deep"
    summary = "VPT-deep: a fresh prompt set before every block (paper Fig. 2b)"
    default_optim = {"optimizer": "sgd", "lr": 0.5, "weight_decay": 0.0}  # docs/default-optim.md
    config_cls = DeepConfig
