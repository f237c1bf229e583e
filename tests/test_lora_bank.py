"""Per-sample LoRA on the shared backbone: equal to merged weights ``W + s B A``, hooks gone after each pass,
no backbone copy per task."""

from __future__ import annotations

import copy

import pytest
import torch
from test_multitask import fresh_model, make_images, micro_backbone, reference, save_tiny_task

from vptune.backbones import wrap_backbone
from vptune.methods import build_method
from vptune.tasks.delta_bank import row_method
from vptune.tasks.lora_bank import LoraWeights, linear_at, only_lora_tensors, shallow_copy
from vptune.tasks.multitask import MultiTaskModel
from vptune.tasks.row_edits import per_sample_edits

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "vptune_micro_vit"


def random_weights(arch, targets: dict[int, list[str]], rank: int, scale: float, seed: int) -> LoraWeights:
    gen = torch.Generator().manual_seed(seed)
    pairs = {}
    for index, names in targets.items():
        for target in names:
            layer = linear_at(arch, index, target)
            a = torch.randn(rank, layer.in_features, generator=gen) / layer.in_features**0.5  # (r, in)
            b = 0.1 * torch.randn(layer.out_features, rank, generator=gen)  # (out, r): a trained-size update
            pairs[(index, target)] = (a, b)
    return LoraWeights(pairs, scale)


def merged(vit: torch.nn.Module, weights: LoraWeights) -> torch.nn.Module:
    """The reference from the definition: a copy whose weights are ``W + s B A`` (Hu et al., 2022, eq. 3)."""
    out = copy.deepcopy(vit)
    arch = wrap_backbone(out, NAME)
    with torch.no_grad():
        for index, target in weights.keys:
            a, b = weights.pair(index, target)
            linear_at(arch, index, target).weight.add_(weights.scale * b @ a)
    return out


def test_per_sample_updates_equal_merged_weights():
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, NAME)
    first = random_weights(arch, {0: ["qkv"], 3: ["qkv", "fc2"]}, rank=2, scale=0.5, seed=0)
    second = random_weights(arch, {1: ["proj", "fc1"], 5: ["qkv"]}, rank=4, scale=2.0, seed=1)
    x = torch.randn(6, 65, 192)  # (B, N, D): rows 0-1 first task, 2 none, 3-5 second task
    with torch.no_grad():
        with per_sample_edits(arch, [(0, 2, first), (2, 1, None), (3, 3, second)]):
            got = arch.run_blocks(x)
        want = [
            wrap_backbone(merged(vit, w), NAME).run_blocks(x[rows])
            for w, rows in ((first, slice(0, 2)), (second, slice(3, 6)))
        ]
        plain = arch.run_blocks(x[2:3])
        unadapted = arch.run_blocks(x[0:2])
    assert (got[0:2] - unadapted).abs().max() > 1e-2  # the updates matter
    torch.testing.assert_close(got[0:2], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[3:6], want[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2:3], plain, atol=0, rtol=0)  # a non-LoRA row is untouched


def test_hooks_are_removed_even_after_an_error():
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, NAME)
    weights = random_weights(arch, {0: ["qkv"], 2: ["fc1"]}, rank=2, scale=1.0, seed=0)
    with pytest.raises(RuntimeError, match="boom"), per_sample_edits(arch, [(0, 1, weights)]):
        assert linear_at(arch, 0, "qkv")._forward_hooks
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in vit.modules())


def test_shallow_copy_shares_tensors_but_not_modules():
    vit, _ = micro_backbone()
    twin = shallow_copy(vit)
    assert all(a is b for a, b in zip(vit.parameters(), twin.parameters()))
    twin.blocks[0].attn.qkv = torch.nn.Identity()
    assert isinstance(vit.blocks[0].attn.qkv, torch.nn.Linear)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ({"name": "lora"}, "lora"),
        ({"name": "bias"}, "bias"),
        ({"name": "adapter"}, "adapter"),
        ({"name": "full"}, None),
    ],
)
def test_which_methods_may_run_per_sample(method, expected):
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, NAME)
    assert row_method(build_method(method, arch.info), arch) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["backbone.blocks.0.attn.qkv.lora_A.weight", "backbone.blocks.0.attn.qkv.lora_B.weight", "head.weight"], True),
        (["backbone.blocks.5.attn.qkv.lora_B.weight"], True),
        (["backbone.blocks.0.mlp.fc1.lora_A.weight"], False),  # fc1 is not wrapped in this model
        (["backbone.blocks.0.attn.qkv.lora_A.weight", "backbone.norm.bias"], False),  # a changed backbone tensor
    ],
)
def test_only_lora_tensors(names, expected):
    model = fresh_model({"name": "lora", "targets": ["qkv"]}, 2)
    assert only_lora_tensors(model.backbone, names) is expected


def test_a_lora_task_with_other_backbone_tensors_gets_a_private_copy(tmp_path, monkeypatch):
    from vptune.tasks import delta_bank

    path = save_tiny_task(tmp_path / "odd", {"name": "lora", "rank": 2}, 2, seed=0)
    monkeypatch.setattr(delta_bank, "only_lora_tensors", lambda backbone, names: False)
    bank = MultiTaskModel.from_dirs({"odd": path})
    assert bank.tasks[0]["mode"] == "isolated" and "backbone" in bank.tasks[0]["isolated_reason"]
    assert bank.memory_bytes()["tasks"] > bank.memory_bytes()["backbone"]  # a whole copy
    images = make_images(2)
    with torch.no_grad():
        got = torch.stack(bank(bank.preprocess(images), ["odd", "odd"]))
        torch.testing.assert_close(got, reference(path).logits(images), atol=1e-4, rtol=1e-4)


def test_eight_lora_tasks_hold_one_backbone(tmp_path):
    """Memory: the bank holds the backbone once plus each task's A, B and head (counted exactly)."""
    ranks, targets = [1, 2, 4, 8] * 2, [["qkv"], ["fc1", "fc2"]] * 4
    methods = [{"name": "lora", "rank": r, "targets": t} for r, t in zip(ranks, targets)]
    paths = {f"l{i}": save_tiny_task(tmp_path / f"l{i}", m, 3, seed=i) for i, m in enumerate(methods)}
    bank = MultiTaskModel.from_dirs(paths, plan="padded")
    mem = bank.memory_bytes()
    per_task = [sum(t.numel() * 4 for t in bank.task_modules[n].state_dict().values()) for n in paths]
    assert mem["tasks"] == sum(per_task) and mem["total"] < 1.2 * mem["backbone"]
    assert all(t["mode"] == "batched" for t in bank.tasks)
    names = list(paths) * 2
    images = make_images(len(names), seed=3)
    with torch.no_grad():
        logits = bank(bank.preprocess(images), names)
        for name in paths:
            rows = [i for i, n in enumerate(names) if n == name]
            expected = reference(paths[name]).logits([images[i] for i in rows])
            torch.testing.assert_close(torch.stack([logits[i] for i in rows]), expected, atol=1e-4, rtol=1e-4)
    bank.remove_task("l0")
    assert bank.memory_bytes()["tasks"] == sum(per_task[1:])
