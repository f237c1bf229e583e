"""Attention maps and rollout, checked against plain references written from the definitions.

* A plain ViT forward written out here (softmax(q k^T / sqrt(d)) per head) gives the frozen backbone's
  attention probabilities and final tokens; the captured probabilities must equal them.
* For every method, the captured probabilities times the values, through the block's projection, must equal
  what the block's own attention module (fused attention, prefix keys, LoRA) returned in the same forward.
* Rollout (Abnar & Zuidema, 2020) against a hand-computed case and a loop over numpy arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_model
from PIL import Image

from vptune.errors import ConfigError
from vptune.viz.attention import attention_probs, capture_attention, rollout
from vptune.viz.attention_grid import attention_grids, parse_layers

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = [
    ("linear", {"name": "linear"}, [0] * 6, [0] * 6),
    ("vpt-shallow", {"name": "vpt-shallow", "prompt_length": 5}, [5] * 6, [0] * 6),
    ("vpt-deep", {"name": "vpt-deep", "prompt_length": 3}, [3] * 6, [0] * 6),
    ("vpt-deep late", {"name": "vpt-deep", "prompt_length": 4, "layers": [3, 5]}, None, [0] * 6),
    ("vpt-prefix", {"name": "vpt-prefix", "prompt_length": 4}, [0] * 6, [4] * 6),
    ("lora", {"name": "lora", "rank": 2}, [0] * 6, [0] * 6),
    ("adapter", {"name": "adapter", "reduction": 16}, [0] * 6, [0] * 6),
    ("bias", {"name": "bias"}, [0] * 6, [0] * 6),
    ("full", {"name": "full"}, [0] * 6, [0] * 6),
    ("partial", {"name": "partial", "k": 1}, [0] * 6, [0] * 6),
    ("mlp", {"name": "mlp", "layers": 2, "hidden_dim": 16}, [0] * 6, [0] * 6),
    ("sidetune", {"name": "sidetune", "width": 8}, [0] * 6, [0] * 6),
    ("vpt-shallow add", {"name": "vpt-shallow", "prompt_length": 3, "location": "add"}, [0] * 6, [0] * 6),
    ("vpt-shallow pixel", {"name": "vpt-shallow", "prompt_length": 2, "location": "prepend-pixel"}, [2] * 6, [0] * 6),
    ("vpt-deep shared", {"name": "vpt-deep", "prompt_length": 3, "sharing": "shared-inter"}, [3] * 6, [0] * 6),
]


def perturbed(method: dict):
    """The micro ViT with the method's trainable tensors moved away from their (often neutral) init."""
    model = tiny_model(method, num_classes=4)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()


def plain_vit(vit, images):
    """The frozen ViT forward written out: (per-block attention (B, H, N, N), final tokens)."""
    x = vit.patch_embed(images)  # (B, h*w, D)
    x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + vit.pos_embed  # (B, 1 + h*w, D)
    x = vit.norm_pre(x)
    probs = []
    for blk in vit.blocks:
        h = blk.norm1(x)
        b, n, d = h.shape
        heads = blk.attn.num_heads
        qkv = h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias  # (B, N, 3D)
        q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # each (B, H, N, d/H)
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // heads) ** 0.5, dim=-1)  # (B, H, N, N)
        probs.append(a)
        out = (a @ v).transpose(1, 2).reshape(b, n, d)
        x = x + blk.ls1(blk.attn.proj(out))
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return probs, vit.norm(x)


def test_frozen_backbone_attention_equals_a_plain_vit():
    model = perturbed({"name": "linear"})
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps, _ = capture_attention(model, images)
    with torch.no_grad():
        probs, tokens = plain_vit(model.backbone, images)
        torch.testing.assert_close(tokens, model.forward_tokens(images), rtol=1e-4, atol=1e-4)
    assert len(maps.probs) == 6 and maps.grid == (8, 8) and maps.num_prefix == 1
    for got, want in zip(maps.probs, probs):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("label,method,prompts,prefix_keys", METHODS, ids=[m[0] for m in METHODS])
def test_probabilities_reproduce_each_attention_output(label, method, prompts, prefix_keys):
    from vptune.methods.prompt_layers import PrefixAttention

    model = perturbed(method)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    inputs, outputs = [], []

    def keep(module, args, output):
        inputs.append(args[0])
        outputs.append(output)

    handles = [blk.attn.register_forward_hook(keep) for blk in model.backbone.blocks]
    maps, logits = capture_attention(model, images)
    for h in handles:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images))
    assert maps.prefix_keys == prefix_keys
    if prompts is not None:
        assert maps.prompts == prompts
    else:  # prompts only where the method puts them
        assert maps.prompts[3] == 4 and maps.prompts[5] == 4 and maps.prompts[0] == 0
    for blk, x, out, p in zip(model.backbone.blocks, inputs, outputs, maps.probs):
        attn = blk.attn.attn if isinstance(blk.attn, PrefixAttention) else blk.attn
        b, n, d = x.shape
        heads = attn.num_heads
        with torch.no_grad():
            v = attn.qkv(x).reshape(b, n, 3, heads, d // heads)[:, :, 2].transpose(1, 2)  # (B, H, N, hd)
            if isinstance(blk.attn, PrefixAttention):
                keys = blk.attn.source(b)  # (B, p, D)
                pv = attn.qkv(keys).reshape(b, keys.shape[1], 3, heads, d // heads)[:, :, 2].transpose(1, 2)
                v = torch.cat([pv, v], dim=2)  # (B, H, p + N, hd)
            mixed = (p @ v).transpose(1, 2).reshape(b, n, d)
            torch.testing.assert_close(attn.proj(mixed), out, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    cls = maps.cls_to_patches(0)
    assert cls.shape == (2, 8, 8) and bool((cls >= 0).all())
    assert (maps.prompts_to_patches(5) is None) == (maps.prompts[5] == 0)
    share = maps.cls_prompt_share(5)
    assert (share > 0) == (maps.prompts[5] > 0 or maps.prefix_keys[5] > 0) and 0 <= share < 1
    rolled = maps.rollout_cls()
    assert rolled.shape == (2, 8, 8) and bool((rolled > 0).all())


def test_rollout_hand_computed_and_against_a_loop():
    a1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    a2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    # (A1 + I)/2 = [[1, 0], [.5, .5]]; (A2 + I)/2 = [[.5, .5], [0, 1]]; product A2' A1'
    torch.testing.assert_close(rollout([a1, a2]), torch.tensor([[[0.75, 0.25], [0.5, 0.5]]]))
    torch.testing.assert_close(rollout([torch.eye(3)[None]]), torch.eye(3)[None])
    rng = np.random.default_rng(0)
    layers = [rng.random((5, 5)) for _ in range(4)]
    layers = [a / a.sum(1, keepdims=True) for a in layers]
    want = np.eye(5)
    for a in layers:  # Abnar & Zuidema: A' = 0.5 A + 0.5 I, rows normalised, multiplied in layer order
        a = 0.5 * a + 0.5 * np.eye(5)
        want = (a / a.sum(1, keepdims=True)) @ want
    got = rollout([torch.tensor(a)[None] for a in layers])[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(got.sum(1), np.ones(5))
    with pytest.raises(ValueError):
        rollout([])


def test_extra_keys_enter_the_softmax():
    model = perturbed({"name": "linear"})
    attn = model.backbone.blocks[0].attn
    x = torch.randn(1, 5, 192)
    plain = attention_probs(attn, x)
    extended = attention_probs(attn, x, torch.randn(1, 2, 192))
    assert plain.shape == (1, 3, 5, 5) and extended.shape == (1, 3, 5, 7)
    ratio = extended[..., 2:] / plain  # the token columns keep their proportions, scaled down together
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))


@pytest.mark.parametrize(
    "spec,want", [(None, [0, 1, 2, 3, 4, 5]), ("all", [0, 1, 2, 3, 4, 5]), ("0,5", [0, 5]), ("-1,2,2", [2, 5])]
)
def test_parse_layers(spec, want):
    assert parse_layers(spec, 6) == want


@pytest.mark.parametrize("spec,message", [("6", "block 6 does not exist"), ("a", "'a' is not a block index")])
def test_parse_layers_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_layers(spec, 6)


def test_grid_png_for_a_task_and_the_cli(tmp_path, capsys):
    from test_multitask import save_tiny_task

    from vptune.cli import main

    task = save_tiny_task(tmp_path / "task", {"name": "vpt-deep", "prompt_length": 2}, 3, seed=0)
    image = tmp_path / "seven.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
    res = attention_grids(task, [image], layers="0,5", out=tmp_path / "grids", device="cpu")
    png = tmp_path / "grids" / "attention_seven.png"
    assert res["files"] == [str(png)] and res["layers"] == [0, 5] and res["method"] == "vpt-deep"
    with Image.open(png) as im:
        width, height = im.size
    # 4 columns (input, 2 layers, rollout) x 3 rows (frozen [CLS], task [CLS], task prompts) at 120 dpi
    assert (width, height) == (round(120 * 1.9 * 4), round(120 * (2.3 * 3 + 0.4)))
    assert main(["visualize", str(task), "--attention", str(image), "--layers", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == [str(task / "attention_seven.png")] and (task / "attention_seven.png").is_file()
    assert out["predictions"][0] in ["c0", "c1", "c2"]
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "seven.png"
    Image.open(image).save(twin)
    res = attention_grids(task, [image, twin], layers="0", out=tmp_path / "twins", device="cpu")
    assert [Path(f).name for f in res["files"]] == ["attention_seven.png", "attention_seven_2.png"]


def test_visualize_needs_data_or_attention(tmp_path, capsys):
    from test_multitask import save_tiny_task

    from vptune.cli import main

    task = save_tiny_task(tmp_path / "task", {"name": "linear"}, 3, seed=0)
    code = main(["visualize", str(task)])
    assert code != 0 and "--data SPEC" in capsys.readouterr().err


def test_families_without_one_token_sequence_are_refused():
    from vptune.model import build_model

    torch.manual_seed(0)
    swin = build_model("vptune_micro_swin", {"name": "linear"}, 3, pretrained=False)
    with pytest.raises(ConfigError, match="need a plain ViT-family backbone"):
        capture_attention(swin, torch.randn(1, 3, 32, 32))
