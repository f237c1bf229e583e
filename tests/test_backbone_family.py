"""A second, hierarchical backbone family plugs in through the interface alone (no change to model, engine, cache).

``ToyHier`` is a test-only two-stage token model (no class token, patch merging between the stages, like Swin
without windows), built from timm's public ``Block``; ``ToyFamily`` is its :class:`Backbone`, registered for
these tests only.
"""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn

import vptune.backbones.interface as interface
from vptune.backbones import Backbone, BackboneInfo, Stage, TokenLayout, wrap_backbone
from vptune.engine.cache import CachedTail, cache_start, frozen_features
from vptune.errors import ConfigError
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.tasks.multitask import shared_pass_blocker

WIDTHS, GRIDS = (16, 32), ((8, 8), (4, 4))  # per stage: width, patch grid of a 32x32 image in 4x4 patches


class ToyHier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch_embed = nn.Conv2d(3, WIDTHS[0], 4, stride=4)
        self.layers = nn.ModuleList(nn.ModuleList(Block(w, 2) for _ in range(2)) for w in WIDTHS)
        self.merge = nn.Linear(4 * WIDTHS[0], WIDTHS[1])  # 2x2 neighbouring tokens -> one wider token
        self.norm = nn.LayerNorm(WIDTHS[1])


def merge_tokens(x: torch.Tensor, grid: tuple[int, int], merge: nn.Module) -> torch.Tensor:
    b, _, d = x.shape
    h, w = grid
    x = x.reshape(b, h // 2, 2, w // 2, 2, d).permute(0, 1, 3, 2, 4, 5)  # (B, h/2, w/2, 2, 2, D)
    return merge(x.reshape(b, (h // 2) * (w // 2), 4 * d))  # (B, h*w/4, 2D)


class ToyFamily(Backbone):
    family = "toy-hier"

    @classmethod
    def accepts(cls, module: nn.Module) -> bool:
        return isinstance(module, ToyHier)

    def describe(self) -> BackboneInfo:
        params = sum(p.numel() for p in self.module.parameters())
        return BackboneInfo(self.name, WIDTHS[1], 4, 0, (4, 4), 3, 64, params)

    def stages(self) -> list[Stage]:
        return [Stage(2 * k, 2 * k + 2, TokenLayout(0, GRIDS[k], WIDTHS[k])) for k in range(2)]

    def block(self, index: int) -> nn.Module:
        return self.module.layers[index // 2][index % 2]

    def embed(self, images, insert=None):
        return self.module.patch_embed(images).flatten(2).transpose(1, 2)  # (B, 64, 16)

    def enter_stage(self, x, stage):
        return merge_tokens(x, GRIDS[stage - 1], self.module.merge)

    def finish(self, x):
        return self.module.norm(x)

    def pool(self, x, output, num_prompts=0):
        return x.mean(dim=1)

    def dense(self, x, num_prompts=0):
        return x.transpose(1, 2).reshape(x.shape[0], -1, *GRIDS[1])

    def final_norms(self):
        return [self.module.norm]


@pytest.fixture(autouse=True)
def toy_family(monkeypatch):
    monkeypatch.setattr(interface, "FAMILIES", [*interface.FAMILIES, ToyFamily])


def reference(toy: ToyHier, images: torch.Tensor) -> torch.Tensor:
    """The toy's forward written out plainly: pooled features (B, 32)."""
    x = toy.patch_embed(images).flatten(2).transpose(1, 2)
    for block in toy.layers[0]:
        x = block(x)
    x = merge_tokens(x, GRIDS[0], toy.merge)
    for block in toy.layers[1]:
        x = block(x)
    return toy.norm(x).mean(dim=1)


def toy_model(method: dict) -> AdaptedModel:
    toy = ToyHier().eval()
    info = wrap_backbone(toy, "toy").info
    return AdaptedModel(toy, info, build_method(method, info), 3)


@pytest.mark.parametrize("method", [{"name": "linear"}, {"name": "lora", "rank": 2}, {"name": "partial", "k": 3}])
def test_methods_run_on_a_hierarchical_family(method, images):
    model = toy_model(method).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), reference(ToyHier().eval(), images))
    assert model(images).shape == (2, 3) and model.forward_dense(images).shape == (2, 32, 4, 4)


def test_partial_trains_the_last_blocks_across_stages():
    model = toy_model({"name": "partial", "k": 3})
    # "backbone.layers.0.1.attn.qkv.weight" -> "layers.0.1" (stage 0, block 1)
    trained = {".".join(n.split(".")[1:4]) for n, p in model.named_parameters() if p.requires_grad}
    assert {"layers.0.1", "layers.1.0", "layers.1.1"} <= trained and "layers.0.0" not in trained


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_cache_split_at_any_block_equals_the_whole_forward(cut, images):
    model = toy_model({"name": "partial", "k": 4 - cut}).eval()
    assert cache_start(model) == cut
    with torch.no_grad():
        tail = CachedTail(model, cut)(frozen_features(model, images, cut))
        assert torch.equal(tail, model(images))


def test_token_prompt_methods_refuse_the_family_and_the_bank_isolates_it():
    with pytest.raises(ConfigError, match="'toy-hier' backbone family does not support"):
        toy_model({"name": "vpt-shallow", "prompt_length": 2})
    model = toy_model({"name": "linear"})
    assert "'toy-hier' backbone family" in shared_pass_blocker(model.method, [], model.arch)
