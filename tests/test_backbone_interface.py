"""The backbone interface (vptune.backbones.Backbone) against plain references built from timm's own modules."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import TINY, tiny_model
from torch import nn

from vptune.backbones import Stage, TokenLayout, create_vit, wrap_backbone
from vptune.errors import ConfigError

D, DEPTH, GRID = 192, 6, 8  # the micro ViT: width 192, 6 blocks, 32x32 input in 4x4 patches


@pytest.fixture(scope="module")
def vit():
    return create_vit(TINY, pretrained=False).eval()


@pytest.fixture(scope="module")
def arch(vit):
    return wrap_backbone(vit, TINY)


def test_layout_of_a_plain_vit(vit, arch):
    assert arch.family == "vit" and arch.token_prompts and arch.masked_attention
    assert arch.stages() == [Stage(0, DEPTH, TokenLayout(num_prefix=1, grid=(GRID, GRID), dim=D))]
    assert arch.depth == DEPTH and list(arch.iter_blocks()) == list(vit.blocks)
    assert all(arch.block(i) is vit.blocks[i] for i in range(DEPTH))
    assert arch.final_norms() == [vit.norm]  # fc_norm is an Identity without parameters
    assert arch.input_projection() is vit.patch_embed.proj and arch.input_size() == (32, 32)


def test_register_tokens_count_as_prefix():
    vit = timm.create_model(TINY, pretrained=False, num_classes=0, reg_tokens=2)
    assert wrap_backbone(vit, "micro-reg").stages()[0].layout.num_prefix == 3


def test_embed_blocks_finish_pool_equal_timm(vit, arch, images):
    with torch.no_grad():
        tokens = arch.finish(arch.run_blocks(arch.embed(images)))
        assert torch.equal(tokens, vit.forward_features(images))
        pooled = arch.pool(tokens, arch.default_output())
        assert torch.equal(pooled, vit.forward_head(vit.forward_features(images), pre_logits=True))


@pytest.mark.parametrize("cut", [0, 2, DEPTH])
def test_blocks_start_stop_compose(arch, images, cut):
    with torch.no_grad():
        x = arch.embed(images)
        whole = arch.run_blocks(x)
        assert torch.equal(arch.run_blocks(arch.run_blocks(x, 0, cut), cut), whole)


def test_hook_sees_each_block_input_in_order(vit, arch, images):
    seen, entering = [], []
    hooks = [b.register_forward_pre_hook(lambda _m, args: entering.append(args[0])) for b in vit.blocks]

    def hook(x, index):
        seen.append(index)
        return x + 1.0 if index == 3 else x  # an edit reaches the block

    with torch.no_grad():
        x = arch.embed(images)
        arch.run_blocks(x, 1, 5, before_block=hook)
    for h in hooks:
        h.remove()
    assert seen == [1, 2, 3, 4] and len(entering) == 4
    with torch.no_grad():
        reference = vit.blocks[2](vit.blocks[1](x)) + 1.0  # plain loop over timm's blocks
    assert torch.equal(entering[2], reference)


def test_attention_mask_reaches_every_block(arch, images):
    with torch.no_grad():
        x = arch.embed(images)
        n = x.shape[1]
        keep_all = torch.ones(2, 1, 1, n, dtype=torch.bool)
        torch.testing.assert_close(arch.run_blocks(x, attn_mask=lambda _i: keep_all), arch.run_blocks(x))
        hide_cls = keep_all.clone()
        hide_cls[..., 0] = False
        masked = arch.run_blocks(x, attn_mask=lambda _i: hide_cls)
        assert not torch.allclose(masked, arch.run_blocks(x))


def test_dense_map_is_the_patch_grid(arch, images):
    with torch.no_grad():
        tokens = arch.finish(arch.run_blocks(arch.embed(images)))
    dense = arch.dense(tokens)
    assert dense.shape == (2, D, GRID, GRID)
    for i, j in [(0, 0), (0, 7), (3, 5), (7, 7)]:
        assert torch.equal(dense[:, :, i, j], tokens[:, 1 + i * GRID + j])  # row-major after the CLS token


def test_model_dense_map_drops_prompt_tokens(images):
    model = tiny_model({"name": "vpt-shallow", "prompt_length": 3}).eval()
    with torch.no_grad():
        tokens = model.forward_tokens(images)
        dense = model.forward_dense(images)
    assert tokens.shape[1] == 1 + 3 + GRID * GRID and dense.shape == (2, D, GRID, GRID)
    assert torch.equal(dense[:, :, 0, 0], tokens[:, 4])


def test_model_forward_blocks_split_equals_whole_forward(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2}).eval()
    with torch.no_grad():
        x = model.embed(images)
        split = model.forward_blocks(model.forward_blocks(x, 0, 3), 3)
        assert torch.equal(model.arch.finish(split), model.forward_tokens(images))


def test_a_module_of_no_family_is_refused():
    with pytest.raises(ConfigError, match=r"'mlp' \(Sequential\) belongs to no supported backbone family \(vit"):
        wrap_backbone(nn.Sequential(nn.Linear(3, 3)), "mlp")
