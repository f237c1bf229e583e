"""VPT-prefix: prompts enter only as extra keys/values of every self-attention (no queries, no MLP).

Per prompted layer i the method holds p prompt tokens P_i (p, D) in the token space, exactly like VPT-deep.
Inside block i they pass through the block's frozen ``norm1`` and the key/value rows of the frozen ``qkv``
(and ``k_norm``); every image token then attends over [prompt K/V ; token K/V]. The prompts never form queries
and never pass through the MLP, and the sequence length is unchanged.

Why this choice (rather than free key/value vectors): VPT-deep discards the prompt outputs of layer i at layer
i + 1, so the only effect of P_i on the [CLS] and patch tokens is through their keys and values. With the same
prompt tensor, vpt-prefix with ``layers: all`` therefore computes exactly VPT-deep's [CLS] and patch tokens, at
the cost of p extra keys instead of p extra tokens (same parameters: L * p * D).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import Field
from timm.models.vision_transformer import Block
from torch import nn

from ..backbones import Backbone, BackboneInfo
from ..errors import ConfigError
from .base import Method, MethodConfig, register_method
from .prompt import prompt_init_bound
from .prompt_layers import LAYERS_HELP, LayerSpec, PrefixAttention, resolve_layers
from .structure import mark_trainable


class PrefixConfig(MethodConfig):
    """VPT-prefix options."""

    name: Literal["vpt-prefix"] = "vpt-prefix"
    prompt_length: int = Field(10, ge=0, le=4096, description="prompt keys/values per prompted layer (p)")
    layers: LayerSpec = Field("all", description=LAYERS_HELP.split(";")[0])
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the prompt tokens at every use")

    def check(self, info: BackboneInfo) -> None:
        super().check(info)
        resolve_layers(self.layers, info.depth)
        if self.output == "prompt-pool":
            raise ConfigError(
                "method.output: 'prompt-pool' is not available with vpt-prefix: its prompts are keys/values only "
                "and add no tokens to the sequence; use cls, image-pool or global-pool"
            )


@register_method
class VPTPrefix(Method):
    """Prompt tokens as extra keys/values of the frozen attention of each prompted block."""

    name = "vpt-prefix"
    families = ("vit",)  # wraps modules inside ViT blocks
    summary = "VPT-prefix: prompts only as extra keys/values of every self-attention"
    default_optim = {"optimizer": "sgd", "lr": 0.5, "weight_decay": 0.0}  # docs/default-optim.md
    config_cls = PrefixConfig

    def __init__(self, config: PrefixConfig, info: BackboneInfo) -> None:
        super().__init__(config, info)
        self.length = config.prompt_length
        self.layers = resolve_layers(config.layers, info.depth)
        if self.length:  # (prompted layers L, p, D)
            self.prompts = nn.Parameter(torch.empty(len(self.layers), self.length, info.embed_dim))
            bound = prompt_init_bound(info)
            nn.init.uniform_(self.prompts, -bound, bound)
        else:  # p = 0: nothing is wrapped, the model is exactly the frozen backbone + head
            self.register_parameter("prompts", None)
        self.dropout = nn.Dropout(config.dropout)

    def attach(self, backbone: Backbone) -> None:
        if not self.length:
            return
        if not backbone.token_prompts:
            raise ConfigError(
                f"method.name: vpt-prefix needs a token backbone; the '{backbone.family}' family is not one"
            )
        for slot, index in enumerate(self.layers):
            block = backbone.block(index)
            if not isinstance(block, Block):
                raise ConfigError(
                    f"method.name: vpt-prefix needs timm's pre-norm Block (norm1 -> attn); this backbone's blocks "
                    f"are {type(block).__name__}: use vpt-deep"
                )
            wrapper = PrefixAttention(block.attn, partial(self.prefix_tokens, slot, block.norm1))
            block.attn = mark_trainable(wrapper)

    def prefix_tokens(self, slot: int, norm: nn.Module, batch: int) -> torch.Tensor:
        """The ``slot``-th layer's prompts in its attention's input space: norm1(dropout(P)), (B, p, D).

        Dropout acts after expanding to the batch, so every image gets its own mask (as the official code).
        """
        return norm(self.dropout(self.prompts[slot].expand(batch, -1, -1)))  # (B, p, D)
