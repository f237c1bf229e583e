"""Visual Prompt Tuning (Jia et al., ECCV 2022): learnable prompt tokens inserted into a frozen ViT."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..backbones import BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method


class PromptConfig(MethodConfig):
    """VPT options. Defaults follow the paper's official settings."""

    prompt_length: int = Field(10, ge=0, le=4096, description="prompt tokens per prompted layer (p)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on prompts each time they are inserted")

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        if self.output == "prompt-pool" and self.prompt_length == 0:
            raise ConfigError("method.output: 'prompt-pool' needs prompt_length > 0")


class ShallowConfig(PromptConfig):
    name: Literal["vpt-shallow"] = "vpt-shallow"


class DeepConfig(PromptConfig):
    name: Literal["vpt-deep"] = "vpt-deep"
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on prompts each time they are inserted")


def prompt_init_bound(info: BackboneInfo) -> float:
    """Xavier-style bound mirroring the patch embedding: sqrt(6 / (C * ph * pw + D)); 0.0625 for ViT-B/16."""
    ph, pw = info.patch_size
    return math.sqrt(6.0 / (info.in_chans * ph * pw + info.embed_dim))


class PromptTuning(Method):
    """Prompts inserted after the prefix tokens (CLS + registers), without position embedding.

    Shallow: one prompt set enters before block 0 and flows through every layer. Deep: before each later
    block the tokens at the prompt positions are discarded and replaced by that layer's own prompts.
    """

    deep: bool = False

    def __init__(self, config: PromptConfig, info: BackboneInfo) -> None:
        super().__init__(config, info)
        self.length = config.prompt_length
        self.num_prefix = info.num_prefix_tokens
        self.layers = list(range(info.depth)) if self.deep else [0]
        self.slot = {layer: i for i, layer in enumerate(self.layers)}
        bound = prompt_init_bound(info)
        if self.length:  # (prompted layers L, p, D)
            self.prompts = nn.Parameter(torch.empty(len(self.layers), self.length, info.embed_dim))
            nn.init.uniform_(self.prompts, -bound, bound)
        else:  # p = 0: no prompt tensor at all, the model is exactly the frozen backbone + head
            self.register_parameter("prompts", None)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def prompt_tokens(self) -> int:
        return self.length

    def before_block(self, x: torch.Tensor, index: int) -> torch.Tensor:
        slot = self.slot.get(index)
        if slot is None or self.length == 0:
            return x
        prompts = self.dropout(self.prompts[slot]).unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, p, D)
        n = self.num_prefix
        # the first prompted layer inserts; later ones replace the p tokens at the prompt positions
        rest = x[:, n:] if index == self.layers[0] else x[:, n + self.length :]
        return torch.cat([x[:, :n], prompts.to(x.dtype), rest], dim=1)  # (B, n + p + patches, D)


@register_method
class VPTShallow(PromptTuning):
    name = "vpt-shallow"
    summary = "VPT-shallow: p prompts before the first block (paper Fig. 2a)"
    config_cls = ShallowConfig
    deep = False


@register_method
class VPTDeep(PromptTuning):
    name = "vpt-deep"
    summary = "VPT-deep: a fresh prompt set before every block (paper Fig. 2b)"
    config_cls = DeepConfig
    deep = True
