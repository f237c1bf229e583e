"""Semantics of the VPT variants on the micro ViT (D=192, depth 6, 64 patches + CLS): what enters each block."""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import timm
import torch
from conftest import tiny_model

from vptune.backbones import create_vit, describe
from vptune.errors import ArtifactError, ConfigError
from vptune.methods import build_method
from vptune.methods.prompt_layers import PrefixAttention, resolve_layers
from vptune.model import AdaptedModel
from vptune.tasks import save_task
from vptune.tasks.ensemble import load_ensemble

PATCHES, D = 64, 192


def block_inputs(model: AdaptedModel, images: torch.Tensor) -> list[torch.Tensor]:
    """The token sequence entering every block (forward pre-hooks), model in eval mode."""
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for b in model.backbone.blocks]
    model.eval()
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return seen


@functools.lru_cache(maxsize=1)
def frozen_vit() -> torch.nn.Module:
    """A fresh, untouched micro ViT with tiny_model's seeded weights (never attach a method to it)."""
    return create_vit("vptune_micro_vit", pretrained=False).eval()


def frozen_tokens(images: torch.Tensor) -> torch.Tensor:
    """Final normalised tokens (B, 1 + patches, D) of the untouched micro ViT."""
    with torch.no_grad():
        return frozen_vit().forward_features(images)


def test_prepend_inserts_after_all_prefix_tokens(images):
    vit = timm.create_model("vptune_micro_vit", pretrained=False, num_classes=0, reg_tokens=2)  # CLS + 2 registers
    info = describe("micro-reg", vit)
    model = AdaptedModel(vit, info, build_method({"name": "vpt-shallow", "prompt_length": 3}, info), 5)
    embedded = model.method.embed(model.arch, images)
    first = block_inputs(model, images)[0]
    assert first.shape[1] == 3 + 3 + PATCHES  # the sequence grows by p
    torch.testing.assert_close(first[:, :3], embedded[:, :3])  # CLS and registers untouched
    torch.testing.assert_close(first[:, 3:6], model.method.prompts[0].expand(2, -1, -1))
    torch.testing.assert_close(first[:, 6:], embedded[:, 3:])


def test_deep_replaces_prompt_tokens_before_every_layer(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2})
    for i, x in enumerate(block_inputs(model, images)):
        assert x.shape[1] == 1 + 2 + PATCHES
        torch.testing.assert_close(x[:, 1:3], model.method.prompts[i].expand(2, -1, -1))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", [0, 1, 2, 3, 4, 5]), ("first", [0]), ("bottom:2", [0, 1]), ("top:2", [4, 5]), ([2, 6, 4], [1, 3, 5])],
)
def test_depth_options_pick_the_right_layers(spec, expected):
    info = describe("vptune_micro_vit", frozen_vit())
    for name in ("vpt-shallow", "vpt-deep", "vpt-prefix"):
        assert build_method({"name": name, "layers": spec}, info).layers == expected
    assert resolve_layers("top:12", 12) == list(range(12)) and resolve_layers("top:3", 12) == [9, 10, 11]


def test_unprompted_layers_carry_prompts_through(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 2, "layers": [2, 4]})
    inputs = block_inputs(model, images)
    prompts = model.method.prompts  # (2 sets, p, D)
    assert inputs[0].shape[1] == 1 + PATCHES  # nothing inserted before layer 2
    assert all(x.shape[1] == 1 + 2 + PATCHES for x in inputs[1:])
    torch.testing.assert_close(inputs[1][:, 1:3], prompts[0].expand(2, -1, -1))  # layer 2 inserts
    assert not torch.allclose(inputs[2][:, 1:3], prompts[0].expand(2, -1, -1))  # layer 3: layer 2's outputs
    torch.testing.assert_close(inputs[3][:, 1:3], prompts[1].expand(2, -1, -1))  # layer 4 replaces


@pytest.mark.parametrize(
    ("sharing", "shape"), [("shared-intra", (6, 1, D)), ("shared-inter", (1, 3, D)), ("shared-all", (1, 1, D))]
)
def test_shared_variants_really_share(sharing, shape, images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 3, "sharing": sharing})
    prompts = model.method.prompts
    assert tuple(prompts.shape) == shape
    for i, x in enumerate(block_inputs(model, images)):
        inserted = x[0, 1:4]  # (p, D)
        expected = prompts[0 if shape[0] == 1 else i].expand(3, -1)
        torch.testing.assert_close(inserted, expected)
    model.train()
    model.method.dropout.p = 0.0
    model(images).sum().backward()  # one tensor, gradients from every layer that uses it
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0


def test_projection_maps_small_prompts_to_width(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 3, "projection_dim": 8})
    method = model.method
    assert tuple(method.prompts.shape) == (6, 3, 8)
    inputs = block_inputs(model, images)
    torch.testing.assert_close(inputs[2][0, 1:4], method.project(method.prompts[2]))


def test_add_keeps_length_and_adds_to_first_patches(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 4, "location": "add"})
    assert model.method.prompt_tokens == 0
    embedded = model.method.embed(model.arch, images)
    inputs = block_inputs(model, images)
    assert all(x.shape[1] == 1 + PATCHES for x in inputs)
    torch.testing.assert_close(inputs[0][:, 1:5], embedded[:, 1:5] + model.method.prompts[0])
    torch.testing.assert_close(inputs[0][:, 5:], embedded[:, 5:])
    torch.testing.assert_close(inputs[0][:, :1], embedded[:, :1])


def test_prepend_pixel_goes_through_frozen_patch_projection(images):
    model = tiny_model({"name": "vpt-shallow", "prompt_length": 3, "location": "prepend-pixel"})
    pe = model.backbone.patch_embed
    with torch.no_grad():
        expected = pe.proj(model.method.prompts).flatten(1)  # (p, D): no position embedding
    first = block_inputs(model, images)[0]
    assert first.shape[1] == 1 + 3 + PATCHES
    torch.testing.assert_close(first[0, 1:4], expected)
    assert model.method.prompt_tokens == 3


def test_concat_channel_equals_frozen_backbone_at_init(images):
    model = tiny_model({"name": "vpt-shallow", "prompt_length": 2, "location": "concat-channel"})
    wrapper = model.backbone.patch_embed.proj
    assert wrapper.proj.in_channels == 5 and not wrapper.original.weight.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_tokens(images), frozen_tokens(images), rtol=1e-5, atol=1e-5)
        wrapper.proj.weight[:, 3:].add_(
            torch.randn_like(wrapper.proj.weight[:, 3:])
        )  # once the new kernel slice moves, the channels matter
        assert not torch.allclose(model.forward_tokens(images), frozen_tokens(images), atol=1e-3)


def test_prefix_p0_equals_backbone_exactly(images):
    model = tiny_model({"name": "vpt-prefix", "prompt_length": 0}).eval()
    with torch.no_grad():
        assert torch.equal(model.forward_tokens(images), frozen_tokens(images))


def test_prefix_attention_with_empty_prefix_matches_frozen_attention():
    attn = frozen_vit().blocks[0].attn
    x = torch.randn(2, 65, D)
    wrapped = PrefixAttention(attn, lambda b: torch.zeros(b, 0, D))
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), attn(x), rtol=1e-5, atol=1e-5)


def test_prefix_keeps_length_and_equals_deep_on_cls_and_patches(images):
    prefix = tiny_model({"name": "vpt-prefix", "prompt_length": 3}).eval()
    deep = tiny_model({"name": "vpt-deep", "prompt_length": 3}).eval()
    with torch.no_grad():
        deep.method.prompts.copy_(prefix.method.prompts)
        deep.head.load_state_dict(prefix.head.state_dict())
        assert all(x.shape[1] == 1 + PATCHES for x in block_inputs(prefix, images))
        tokens_deep = deep.forward_tokens(images)  # (B, 1 + p + patches, D)
        tokens_prefix = prefix.forward_tokens(images)  # (B, 1 + patches, D)
    torch.testing.assert_close(tokens_prefix[:, :1], tokens_deep[:, :1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tokens_prefix[:, 1:], tokens_deep[:, 4:], rtol=1e-4, atol=1e-5)


def test_class_prototype_init_sets_class_means():
    torch.manual_seed(3)
    batches = [
        (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])),
        (torch.randn(3, 3, 32, 32), torch.tensor([1, 2, 2])),
    ]
    model = tiny_model({"name": "vpt-deep", "prompt_length": 3, "layers": [1, 4], "init": "class-prototype"}, 3)
    model.method.initialize(model, batches, torch.device("cpu"))
    vit = frozen_vit()
    seen: dict[str, list[torch.Tensor]] = {"in3": [], "out": []}
    hooks = [
        vit.blocks[3].register_forward_pre_hook(lambda _m, a: seen["in3"].append(a[0][:, 0])),
        vit.blocks[5].register_forward_hook(lambda _m, _a, out: seen["out"].append(out[:, 0])),
    ]
    with torch.no_grad():
        for images, _ in batches:
            vit.forward_features(images)
    for h in hooks:
        h.remove()
    labels = torch.cat([lb for _, lb in batches])
    final, entering4 = torch.cat(seen["out"]), torch.cat(seen["in3"])
    for c in range(3):
        torch.testing.assert_close(model.method.prompts[0, c], final[labels == c].mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.method.prompts[1, c], entering4[labels == c].mean(0), rtol=1e-4, atol=1e-5)


def test_class_prototype_needs_one_prompt_per_class():
    with pytest.raises(ConfigError, match=r"prompt_length = num_classes \(5\)"):
        tiny_model({"name": "vpt-shallow", "prompt_length": 3, "init": "class-prototype"}, 5)


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ({"name": "vpt-shallow", "location": "concat-channel", "sharing": "shared-intra"}, "method.sharing"),
        ({"name": "vpt-deep", "location": "concat-channel"}, "method.layers"),
        ({"name": "vpt-deep", "location": "prepend-pixel"}, "method.layers"),
        ({"name": "vpt-shallow", "location": "add", "output": "prompt-pool"}, "method.output"),
        ({"name": "vpt-shallow", "location": "concat-channel", "output": "prompt-pool"}, "method.output"),
        ({"name": "vpt-shallow", "location": "add", "prompt_length": 65}, "method.prompt_length"),
        ({"name": "vpt-shallow", "location": "prepend-pixel", "projection_dim": 8}, "method.projection_dim"),
        ({"name": "vpt-deep", "prompt_length": 5, "init": "class-prototype", "sharing": "shared-all"}, "method.init"),
        ({"name": "vpt-deep", "layers": "top:7"}, "depth 6"),
        ({"name": "vpt-deep", "layers": [1, 9]}, "depth 6"),
        ({"name": "vpt-deep", "layers": "middle:3"}, "method.layers"),
        ({"name": "vpt-deep", "layers": 3}, "method.layers"),
        ({"name": "vpt-deep", "layers": [0, 1]}, "method.layers"),
        ({"name": "vpt-prefix", "layers": [7]}, "depth 6"),
        ({"name": "vpt-prefix", "output": "prompt-pool"}, "method.output"),
        ({"name": "vpt-prefix", "location": "add"}, "method.location"),
    ],
)
def test_invalid_combinations_name_the_field(method, field):
    info = describe("vptune_micro_vit", frozen_vit())
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_method(method, info)


def _save(model: AdaptedModel, path, classes=("a", "b", "c", "d", "e")):
    pre = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
    src = {"pretrained": False, "weights": None, "img_size": None}
    save_task(path, model, classes=list(classes), preprocessing=pre, backbone_source=src)
    return path


def test_ensemble_averages_member_probabilities(images, tmp_path):
    method = {"name": "vpt-prefix", "prompt_length": 2}  # wraps backbone modules: the hardest case to share
    models, paths = [], []
    for seed in (1, 2):
        model = tiny_model(method)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.1)
        models.append(model.eval())
        paths.append(_save(model, tmp_path / f"task{seed}"))
    ensemble = load_ensemble(paths, "cpu")
    assert len(ensemble.members) == 2
    with torch.no_grad():
        expected = (models[0](images).softmax(-1) + models[1](images).softmax(-1)) / 2
        torch.testing.assert_close(ensemble(images), expected, rtol=1e-5, atol=1e-6)
    other = _save(models[1], tmp_path / "other", classes=("a", "b", "c", "d", "z"))
    with pytest.raises(ArtifactError, match="same classes"):
        load_ensemble([paths[0], other], "cpu")
    different = shutil.copytree(paths[1], tmp_path / "different")
    meta = json.loads((different / "task.json").read_text())
    meta["method"]["prompt_length"] = 3
    (different / "task.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="same method"):
        load_ensemble([paths[0], different], "cpu")
