"""Bias (BitFit) and adapter tasks on the shared backbone: per-sample edits equal each task alone, the private-copy
fallback with its reason, one backbone for eight tasks, and the block loop's step seam used by the packed pass."""

from __future__ import annotations

import logging

import pytest
import torch
from test_multitask import fresh_model, make_images, micro_backbone, reference, save_tiny_task

from vptune.backbones import wrap_backbone
from vptune.tasks import delta_bank
from vptune.tasks.delta_bank import AdapterWeights, BiasDeltas
from vptune.tasks.multitask import MultiTaskModel
from vptune.tasks.row_edits import per_sample_edits, structural_copy

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "vptune_micro_vit"


def test_structural_copy_keeps_named_tensors_private():
    vit, _ = micro_backbone()
    twin = structural_copy(vit, ["blocks.0.norm1.bias", "patch_embed.proj.bias"])
    shared = dict(vit.named_parameters())
    for name, tensor in twin.named_parameters():
        private = name in ("blocks.0.norm1.bias", "patch_embed.proj.bias")
        assert (tensor is shared[name]) is not private, name
    with torch.no_grad():
        twin.blocks[0].norm1.bias.add_(1.0)  # loading a task into the copy
    assert not torch.equal(twin.blocks[0].norm1.bias, vit.blocks[0].norm1.bias)


@pytest.mark.parametrize("method", [{"name": "bias"}, {"name": "adapter", "reduction": 16, "activation": "relu"}])
def test_per_sample_edits_equal_each_task_alone(method):
    """Rows of two tasks and a plain row in one pass equal each task's own model (the definition) on its rows."""
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, NAME)
    models, edits = [], []
    for seed in (0, 1):
        model = fresh_model(method, 3)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.5 * torch.randn(p.shape, generator=gen))
        names = [n.removeprefix("backbone.") for n in model.trainable_state_dict() if n.startswith("backbone.")]
        got = delta_bank.bank_edits(method["name"], arch, model, names)
        assert not isinstance(got, str), got
        models.append(model)
        edits.append(got)
    images = torch.randn(5, 3, 32, 32)  # rows 0-1 first task, 2 none, 3-4 second task
    with torch.no_grad(), per_sample_edits(arch, [(0, 2, edits[0]), (2, 1, None), (3, 2, edits[1])]):
        mixed = arch.finish(arch.run_blocks(arch.embed(images)))
    with torch.no_grad():
        plain = arch.finish(arch.run_blocks(arch.embed(images[2:3])))
        for model, rows in zip(models, (slice(0, 2), slice(3, 5))):
            own = model.arch.finish(model.arch.run_blocks(model.arch.embed(images[rows])))
            assert (own - plain.expand_as(own)).abs().max() > 1e-3  # the task changes the features
            torch.testing.assert_close(mixed[rows], own, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[2:3], plain, atol=0, rtol=0)  # a row without edits is untouched
    assert not any(m._forward_hooks for m in vit.modules())


def test_bias_of_an_unknown_layer_or_other_tensors_are_refused():
    vit, _ = micro_backbone()
    model = fresh_model({"name": "bias"}, 2)
    assert "'pos_embed' is not the bias" in BiasDeltas.from_model(vit, model.backbone, ["pos_embed"])
    adapted = fresh_model({"name": "adapter", "reduction": 16}, 2)
    why = AdapterWeights.from_model(adapted.arch, ["blocks.0.mlp.adapter.up.weight", "norm.weight"])
    assert why == "the artifact changes more than the adapters (norm.weight)"
    assert isinstance(AdapterWeights.from_model(adapted.arch, ["blocks.0.mlp.adapter.up.weight"]), AdapterWeights)


def test_a_task_that_can_not_be_banked_keeps_a_private_copy_and_says_why(tmp_path, monkeypatch, caplog):
    path = save_tiny_task(tmp_path / "odd", {"name": "bias"}, 2, seed=0)
    monkeypatch.setattr(delta_bank.BiasDeltas, "from_model", classmethod(lambda cls, *a: "a reason"))
    with caplog.at_level(logging.INFO, logger="vptune.multitask"):
        bank = MultiTaskModel.from_dirs({"odd": path})
    assert "task 'odd' keeps a private backbone copy: a reason" in caplog.text
    info = bank.tasks[0]
    assert info["mode"] == "isolated" and info["isolated_reason"].endswith("; a reason")
    images = make_images(2)
    with torch.no_grad():
        got = torch.stack(bank(bank.preprocess(images), ["odd", "odd"]))
        torch.testing.assert_close(got, reference(path).logits(images), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", [{"name": "bias"}, {"name": "adapter", "reduction": 16}], ids=["bias", "adapter"])
def test_eight_tasks_hold_one_backbone_and_equal_their_predictors(tmp_path, method):
    paths = {f"t{i}": save_tiny_task(tmp_path / f"t{i}", method, 3, seed=i) for i in range(8)}
    paths["deep"] = save_tiny_task(tmp_path / "deep", {"name": "vpt-deep", "prompt_length": 4}, 2, seed=9)
    bank = MultiTaskModel.from_dirs(paths, plan="padded")
    mem = bank.memory_bytes()
    per_task = [sum(t.numel() * 4 for t in bank.task_modules[n].state_dict().values()) for n in paths]
    assert all(t["mode"] == "batched" for t in bank.tasks)
    assert mem["tasks"] == sum(per_task) and mem["total"] < 1.15 * mem["backbone"]  # no backbone copy
    names = list(paths)[::-1] + list(paths)
    images = make_images(len(names), seed=4)
    with torch.no_grad():
        logits = bank(bank.preprocess(images), names)
        for name in paths:
            rows = [i for i, n in enumerate(names) if n == name]
            expected = reference(paths[name]).logits([images[i] for i in rows])
            torch.testing.assert_close(torch.stack([logits[i] for i in rows]), expected, atol=1e-4, rtol=1e-4)
    assert weights_unchanged(bank)


def weights_unchanged(bank: MultiTaskModel) -> bool:
    """The shared backbone still has the weights its hash was taken from (loading never wrote into it)."""
    from vptune.backbones import weights_hash

    return weights_hash(bank.backbone) == bank.digest


def test_the_block_loop_runs_a_given_step():
    """``run_blocks(step=...)`` applies the step as each block; with the block itself it is the plain loop."""
    vit, _ = micro_backbone()
    arch = wrap_backbone(vit, NAME)
    x = torch.randn(2, 65, 192)  # (B, N, D)
    seen = []
    with torch.no_grad():
        plain = arch.run_blocks(x)
        stepped = arch.run_blocks(x, step=lambda index: seen.append(index) or arch.block(index))
    assert seen == list(range(arch.depth)) and torch.equal(plain, stepped)
