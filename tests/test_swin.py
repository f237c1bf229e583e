"""The Swin family and VPT on it, against a plain per-window reference written from the paper's definition."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from vptune.backbones.swin import prompted_windows
from vptune.errors import ConfigError
from vptune.model import build_model

MICRO = "vptune_micro_swin"  # 32x32, 2x2 patches: grids 16-8-4-2, widths 24-48-96-192, 2 blocks per stage, window 4
WIDTHS = (24, 24, 48, 48, 96, 96, 192, 192)


def micro(method: dict, classes: int = 3):
    torch.manual_seed(0)
    return build_model(MICRO, method, classes, pretrained=False)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def region(r: int, size: int, window: int, shift: int) -> int:
    """Shifted-window region of rolled coordinate r (the Swin paper's cyclic-shift mask)."""
    return 0 if r < size - window else (1 if r < size - shift else 2)


def ref_block(block, x: torch.Tensor, h: int, w: int, p: int) -> torch.Tensor:
    """One prompted Swin block, window by window, per image, per head (loops, no batching tricks)."""
    b, _, c = x.shape
    ws, ss = block.window_size[0], block.shift_size[0]
    attn, heads = block.attn, block.attn.num_heads
    y = block.norm1(x)
    prompts, grid = y[:, :p], torch.roll(y[:, p:].reshape(b, h, w, c), (-ss, -ss), (1, 2))
    out_grid, out_prompts = torch.zeros_like(grid), torch.zeros(b, p, c)
    offsets = [(i, j) for i in range(ws) for j in range(ws)]
    windows = [(i, j) for i in range(0, h, ws) for j in range(0, w, ws)]
    bias = torch.zeros(heads, p + ws * ws, p + ws * ws)  # prompt rows and columns: no bias
    for a, (ai, aj) in enumerate(offsets):
        for e, (ei, ej) in enumerate(offsets):
            rel = (ai - ei + ws - 1) * (2 * ws - 1) + (aj - ej + ws - 1)  # index of the relative offset
            bias[:, p + a, p + e] = attn.relative_position_bias_table[rel]
    masks = {}  # per window: -100 between tokens of different shifted regions, prompts never masked
    for i0, j0 in windows:
        masks[i0, j0] = mask = torch.zeros(p + ws * ws, p + ws * ws)
        for a, (ai, aj) in enumerate(offsets):
            for e, (ei, ej) in enumerate(offsets):
                rows = region(i0 + ai, h, ws, ss) != region(i0 + ei, h, ws, ss)
                if ss and (rows or region(j0 + aj, w, ws, ss) != region(j0 + ej, w, ws, ss)):
                    mask[p + a, p + e] = -100.0
    for n in range(b):
        for i0, j0 in windows:
            mask = masks[i0, j0]
            tokens = torch.cat([prompts[n], grid[n, i0 : i0 + ws, j0 : j0 + ws].reshape(-1, c)])  # (p + ws^2, C)
            q, k, v = attn.qkv(tokens).chunk(3, dim=-1)
            outs = []
            for hd in range(heads):
                sl = slice(hd * c // heads, (hd + 1) * c // heads)
                scores = (q[:, sl] @ k[:, sl].T) * attn.scale + bias[hd] + mask
                outs.append(scores.softmax(-1) @ v[:, sl])
            o = attn.proj(torch.cat(outs, dim=-1))
            out_prompts[n] += o[:p] / len(windows)
            out_grid[n, i0 : i0 + ws, j0 : j0 + ws] = o[p:].reshape(ws, ws, c)
    patches = torch.roll(out_grid, (ss, ss), (1, 2)).reshape(b, h * w, c)
    x = x + torch.cat([out_prompts, patches], dim=1)
    return x + block.mlp(block.norm2(x))


def ref_forward(model, images: torch.Tensor, deep: bool) -> torch.Tensor:
    """Pooled features of VPT on the micro Swin: prompts at block 0 (and every block when deep)."""
    swin, prompts = model.backbone, model.method.block_prompts
    p = model.method.length
    x = swin.patch_embed(images).flatten(1, 2)  # (B, 256, 24)
    index = 0
    for s, layer in enumerate(swin.layers):
        if s:
            h, w = layer.input_resolution
            pr, pa = x[:, :p], x[:, p:].reshape(x.shape[0], h, w, -1)
            merged = layer.downsample(pa)  # timm's own merging of the patch grid
            tiled = layer.downsample.reduction(layer.downsample.norm(torch.cat([pr, pr, pr, pr], dim=-1)))
            x = torch.cat([tiled, merged.flatten(1, 2)], dim=1)
        for block in layer.blocks:
            if index == 0 or deep:
                fresh = prompts[index if deep else 0].unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([fresh, x if index == 0 else x[:, p:]], dim=1)
            h, w = block.input_resolution
            x = ref_block(block, x, h, w, p)
            index += 1
    return swin.norm(x).mean(dim=1)


def test_linear_equals_timm_forward(images):
    model = micro({"name": "linear"})
    raw = timm.create_model(MICRO, pretrained=False, num_classes=0).eval()
    raw.load_state_dict(model.backbone.state_dict())
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), raw(images))


def test_prompted_window_step_without_prompts_is_timms_attention(images):
    model = micro({"name": "linear"})
    block = model.backbone.layers[0].blocks[1]  # shifted windows, shift mask in use
    x = model.backbone.patch_embed(images)  # (B, 16, 16, 24)
    with torch.no_grad():
        y = block.norm1(x)
        patches, _ = prompted_windows(block, y, y.flatten(1, 2)[:, :0])
        ours = x + patches
        ours = ours + block.mlp(block.norm2(ours))
        torch.testing.assert_close(ours, block(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,deep", [("vpt-deep", True), ("vpt-shallow", False)])
def test_prompted_swin_equals_the_per_window_reference(images, name, deep):
    model = micro({"name": name, "prompt_length": 3, "dropout": 0.0}).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(images), ref_forward(model, images, deep), atol=1e-4, rtol=1e-4
        )
        one = model.forward_features(images[:1])  # prompts of one image never see another image's windows
        torch.testing.assert_close(model.forward_features(images)[:1], one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "method,count",
    [
        ({"name": "vpt-deep", "prompt_length": 3}, 3 * sum(WIDTHS)),
        ({"name": "vpt-shallow", "prompt_length": 3}, 3 * 24),
        ({"name": "vpt-deep", "prompt_length": 3, "sharing": "shared-intra"}, sum(WIDTHS)),
        ({"name": "vpt-deep", "prompt_length": 0}, 0),
    ],
)
def test_prompt_counts(method, count):
    summary = micro(method).parameter_summary()
    assert summary["method_params"] == count and summary["head_params"] == 192 * 3 + 3


def test_swin_b_deep_count_is_the_papers():
    model = build_model("swin_base_patch4_window7_224", {"name": "vpt-deep", "prompt_length": 10}, 2, pretrained=False)
    assert model.parameter_summary()["method_params"] == 120_320


def test_prompt_init_bound_uses_first_stage_width():
    bound = (6 / (3 * 2 * 2 + 24)) ** 0.5
    prompts = micro({"name": "vpt-deep", "prompt_length": 50}).method.block_prompts
    assert all(t.abs().max() <= bound for t in prompts) and max(t.abs().max() for t in prompts) > 0.9 * bound


def test_gradients_reach_prompts_and_head_only(images):
    model = micro({"name": "vpt-deep", "prompt_length": 2})
    model.train()
    assert not model.backbone.training and model.method.training
    model(images).sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {f"method.block_prompts.{i}" for i in range(8)} | {"head.weight", "head.bias"}


def trainable(model) -> set[str]:
    return {
        n.removeprefix("backbone.")
        for n, p in model.named_parameters()
        if p.requires_grad and n.startswith("backbone.")
    }


@pytest.mark.parametrize(
    "k,expected",
    [
        (1, {"layers.3.blocks.1", "norm"}),
        (2, {"layers.3.blocks.0", "layers.3.blocks.1", "norm"}),  # the whole last stage, not its merging
        (
            4,
            {
                "layers.2.blocks.0",
                "layers.2.blocks.1",
                "layers.3.downsample",
                "layers.3.blocks.0",
                "layers.3.blocks.1",
                "norm",
            },
        ),
    ],
)
def test_partial_k_trains_last_blocks_and_merging_between_them(k, expected):
    names = trainable(micro({"name": "partial", "k": k}))
    assert {n for n in names if not any(n.startswith(e + ".") for e in expected)} == set()
    assert all(any(n.startswith(e + ".") for n in names) for e in expected)


def test_bias_full_linear_counts():
    swin = timm.create_model(MICRO, pretrained=False, num_classes=0)
    biases = sum(m.bias.numel() for m in swin.modules() if isinstance(getattr(m, "bias", None), torch.nn.Parameter))
    assert micro({"name": "bias"}).parameter_summary()["method_params"] == biases
    assert micro({"name": "full"}).parameter_summary()["method_params"] == sum(p.numel() for p in swin.parameters())
    assert micro({"name": "linear"}).parameter_summary()["method_params"] == 0


@pytest.mark.parametrize(
    "method,message",
    [
        ({"name": "vpt-shallow", "location": "add"}, "location"),
        ({"name": "vpt-deep", "sharing": "shared-inter"}, "sharing"),
        ({"name": "vpt-deep", "projection_dim": 8}, "projection_dim"),
        ({"name": "lora"}, "does not support the swin backbone"),
        ({"name": "vpt-pad"}, "does not support the swin backbone"),
        ({"name": "linear", "output": "cls"}, "class token"),
    ],
)
def test_unsupported_variants_are_refused(method, message):
    with pytest.raises(ConfigError, match=message):
        micro(method)


def test_dense_map_drops_prompts(images):
    model = micro({"name": "vpt-deep", "prompt_length": 2}).eval()
    with torch.no_grad():
        dense = model.forward_dense(images)
        tokens = model.forward_tokens(images)
    assert dense.shape == (2, 192, 2, 2)
    assert F.mse_loss(dense.flatten(2).transpose(1, 2), tokens[:, 2:]) == 0
