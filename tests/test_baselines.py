"""Semantics of the paper's baselines on the micro ViT (CPU, offline): what trains, what is identity, merging."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, tiny_model
from torch import nn

from vptune.backbones import create_vit
from vptune.errors import ConfigError
from vptune.methods.adapter import AdapterMlp
from vptune.methods.lora import LoRALinear, merge_lora

D, DEPTH, C = 192, 6, 5
LABELS = torch.tensor([0, 1])


def loss_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(images), LABELS)


def trainable_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.backbone.parameters() if p.requires_grad}


@pytest.mark.parametrize("k", [1, 3, DEPTH])
def test_partial_trains_exactly_last_k_blocks_and_norm(k):
    model = tiny_model({"name": "partial", "k": k})
    vit = model.backbone
    expected = {id(p) for block in vit.blocks[DEPTH - k :] for p in block.parameters()}
    expected |= {id(p) for p in vit.norm.parameters()}
    assert trainable_ids(model) == expected
    model.train()
    for i, block in enumerate(vit.blocks):
        assert all(m.training == (i >= DEPTH - k) for m in block.modules()), f"block {i}"
    assert vit.norm.training and not vit.patch_embed.training
    model.eval()
    assert not any(m.training for m in model.modules())


def test_bias_trains_exactly_the_biases():
    model = tiny_model({"name": "bias"})
    biases = {id(m.bias) for m in model.backbone.modules() if isinstance(getattr(m, "bias", None), nn.Parameter)}
    assert trainable_ids(model) == biases
    assert sum(p.numel() for p in model.backbone.parameters() if p.requires_grad) == 68 * D  # D + 6 * 11D + D


@pytest.mark.parametrize(
    "method",
    [
        {"name": "partial", "k": 2},
        {"name": "bias"},
        {"name": "mlp"},
        {"name": "adapter"},
        {"name": "lora", "targets": ["qkv", "proj", "fc1", "fc2"]},
    ],
    ids=lambda m: m["name"],
)
def test_identity_against_an_untouched_backbone(method, images):
    """test_methods compares with the (possibly wrapped) backbone; here the reference is a fresh, unwrapped one."""
    model = tiny_model(method).eval()
    fresh = create_vit(TINY, pretrained=False).eval()
    with torch.no_grad():
        reference = fresh.forward_head(fresh.forward_features(images), pre_logits=True)
        torch.testing.assert_close(model.forward_features(images), reference, rtol=1e-5, atol=1e-5)


def test_adapter_wraps_every_mlp_and_both_projections_learn(images):
    model = tiny_model({"name": "adapter", "reduction": 8})
    wrappers = [block.mlp for block in model.backbone.blocks]
    assert all(isinstance(w, AdapterMlp) for w in wrappers)
    first = wrappers[0].adapter
    assert first.down.out_features == D // 8 and not any(p.requires_grad for p in wrappers[0].base.parameters())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss_of(model, images).backward()
    assert first.up.weight.grad.abs().sum() > 0, "up-projection must learn from the first step"
    assert first.down.weight.grad.abs().sum() == 0  # up is zero at init: no signal reaches down yet
    opt.step()
    opt.zero_grad()
    loss_of(model, images).backward()
    assert first.down.weight.grad.abs().sum() > 0, "down-projection must learn once up has moved"


def test_lora_merge_is_equivalent_and_unwraps(images):
    model = tiny_model({"name": "lora", "rank": 4, "alpha": 16, "targets": ["qkv", "proj", "fc1", "fc2"]})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.normal_(0, 0.02)
    model.eval()
    with torch.no_grad():
        before = model(images)
        merged = merge_lora(model)
        after = merged(images)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert all(isinstance(block.attn.qkv, nn.Linear) for block in merged.backbone.blocks)
    assert sum(p.numel() for p in merged.parameters() if p.requires_grad) == D * C + C  # only the head is left


def test_lora_artifact_holds_only_a_b_and_head():
    model = tiny_model({"name": "lora"})
    expected = {f"head.{n}" for n, _ in model.head.named_parameters()}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            expected |= {f"{name}.lora_A.weight", f"{name}.lora_B.weight"}
    assert len(expected) == 2 + 2 * DEPTH
    assert set(model.trainable_state_dict()) == expected


def test_lora_branch_initialisation():
    layer = tiny_model({"name": "lora", "rank": 8}).backbone.blocks[0].attn.qkv
    assert isinstance(layer, LoRALinear) and layer.scale == 1.0
    assert torch.count_nonzero(layer.lora_B.weight) == 0 and layer.lora_A.weight.abs().sum() > 0


def test_sidetune_alpha_learns(images):
    model = tiny_model({"name": "sidetune", "alpha": 0.5})
    method = model.method
    assert method.alpha.item() == pytest.approx(0.5)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    loss_of(model, images).backward()
    assert method.alpha_logit.grad.abs() > 0
    opt.step()
    assert method.alpha.item() != pytest.approx(0.5)


def test_sidetune_fixed_alpha_is_a_buffer():
    model = tiny_model({"name": "sidetune", "alpha": 0.8, "learn_alpha": False})
    assert not model.method.alpha_logit.requires_grad
    assert "method.alpha_logit" in model.trainable_state_dict()
    assert model.method.alpha.item() == pytest.approx(0.8)


def test_mlp_head_has_k_linear_layers():
    model = tiny_model({"name": "mlp", "layers": 4, "hidden_dim": 32})
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(D, 32), (32, 32), (32, 32), (32, C)]
    assert not trainable_ids(model)


@pytest.mark.parametrize(
    "method, field",
    [
        ({"name": "partial", "k": 7}, "method.k"),
        ({"name": "partial", "k": 0}, "method.k"),
        ({"name": "mlp", "layers": 0}, "method.layers"),
        ({"name": "adapter", "reduction": 7}, "method.reduction"),
        ({"name": "adapter", "reduction": 256}, "method.reduction"),
        ({"name": "adapter", "placement": "attn"}, "method.placement"),
        ({"name": "lora", "targets": []}, "method.targets"),
        ({"name": "lora", "targets": ["qkv", "query"]}, "method.targets"),
        ({"name": "lora", "targets": ["qkv", "qkv"]}, "method.targets"),
        ({"name": "lora", "rank": 0}, "method.rank"),
        ({"name": "lora", "rank": 193}, "method.rank"),
        ({"name": "sidetune", "alpha": 1.0}, "method.alpha"),
        ({"name": "sidetune", "side": "resnet"}, "method.side"),
    ],
)
def test_invalid_configs_name_the_field(method, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        tiny_model(method)
    if method.get("k") == 7:
        assert "depth 6" in str(err.value)
