"""Efficiency features: activation checkpointing, feature caching, torch.compile fallback, frozen weights."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

import vptune.engine.cache as cache
from vptune.config import build_config
from vptune.engine.trainer import fit
from vptune.methods.base import methods_for
from vptune.methods.mlp import Mlp
from vptune.methods.partial import Partial


def forward_backward(model, images):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # same dropout masks in both passes
    out = model(images)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("name", methods_for("vit"))  # the tiny model is a ViT
def test_activation_checkpointing_changes_nothing(name, images):
    model = tiny_model({"name": name}).train()
    plain_out, plain_grads = forward_backward(model, images)
    model.set_grad_checkpointing(True)
    ckpt_out, ckpt_grads = forward_backward(model, images)
    torch.testing.assert_close(ckpt_out, plain_out, rtol=0, atol=1e-6)
    assert set(ckpt_grads) == set(plain_grads) and plain_grads
    for n, g in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[n], g, rtol=0, atol=1e-6, msg=n)


def saved_bytes(model, images):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(images).sum().backward()
    return total[0]


def test_checkpointing_saves_activation_memory_and_frozen_weights_get_no_gradient(images):
    model = tiny_model({"name": "vpt-deep", "prompt_length": 4}).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())  # autograd skips weight gradients
    plain = saved_bytes(model, images)
    assert all(p.grad is None for p in model.backbone.parameters())
    model.set_grad_checkpointing(True)
    assert saved_bytes(model, images) < plain / 3


def run(image_folder, out, method, **flags):
    base = {
        "model.name": "vptune_micro_vit",
        "model.pretrained": False,
        "data.spec": f"folder:{image_folder}",
        "method": method,
        "train.epochs": 2,
        "train.batch_size": 8,
        "optim.lr": 0.05,
        "optim.scale_lr": False,  # the step size itself (the defaults scale by batch/256)
        "optim.weight_decay": 1e-4,
        "train.progress": False,
        "out": str(out),
    }
    return fit(build_config(flags={**base, **flags}))


def assert_same_weights(a, b, atol):
    sa, sb = a.model.trainable_state_dict(), b.model.trainable_state_dict()
    assert set(sa) == set(sb)
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=atol, msg=name)


def test_linear_feature_cache_gives_the_same_weights_and_is_reused(image_folder, tmp_path, monkeypatch):
    cache.clear_store()
    built = []
    real = cache.build_features
    monkeypatch.setattr(cache, "build_features", lambda *a, **k: built.append(1) or real(*a, **k))
    cached = run(image_folder, tmp_path / "c", {"name": "linear"})
    assert len(built) == 2  # train and val, once for both epochs
    again = run(image_folder, tmp_path / "c2", {"name": "linear"}, **{"optim.lr": 0.01})
    assert len(built) == 2  # another grid point reuses them
    assert not torch.equal(again.model.head.weight, cached.model.head.weight)  # and trained on them
    plain = run(image_folder, tmp_path / "p", {"name": "linear"}, **{"train.feature_cache": False})
    assert len(built) == 2
    assert_same_weights(cached, plain, atol=1e-6)
    assert cached.metrics["test_top1"] == plain.metrics["test_top1"]
    assert cached.history[-1]["val"] == {**plain.history[-1]["val"], "seconds": cached.history[-1]["val"]["seconds"]}


def test_no_cache_with_augmentation(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "build_features", lambda *a, **k: pytest.fail("cached augmented data"))
    run(image_folder, tmp_path / "a", {"name": "linear"}, **{"data.augment": "flip-crop", "train.epochs": 1})


@pytest.mark.parametrize(
    "cls,method,cut",
    [
        (Mlp, {"name": "mlp", "layers": 2, "dropout": 0.0}, lambda m: m.info.depth),
        (Partial, {"name": "partial", "k": 2}, None),
    ],
)
def test_late_methods_can_opt_in(cls, method, cut, image_folder, tmp_path, monkeypatch):
    """mlp (every block frozen) and partial-k (tokens after depth - k blocks) train the same with the cache.

    The Mlp head's dropout is off: the cached and the plain run draw their random numbers in another order.
    """
    rule = cut or (lambda m: m.info.depth - m.config.k)
    monkeypatch.setattr(cls, "frozen_prefix_blocks", rule, raising=False)
    cache.clear_store()
    cached = run(image_folder, tmp_path / "c", method, **{"train.epochs": 1})
    assert len(cache._STORE) == 2
    plain = run(image_folder, tmp_path / "p", method, **{"train.epochs": 1, "train.feature_cache": False})
    assert_same_weights(cached, plain, atol=1e-5)


def test_compile_flag_falls_back_to_eager_when_compilation_fails(image_folder, tmp_path, monkeypatch, capsys):
    assert build_config(flags={"train.compile": True}).train.compile

    def broken_compile(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler for inductor")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    flags = {"train.compile": True, "train.epochs": 1}
    compiled = run(image_folder, tmp_path / "c", {"name": "vpt-deep", "prompt_length": 2, "dropout": 0.0}, **flags)
    assert "torch.compile failed" in capsys.readouterr().err
    plain = run(
        image_folder,
        tmp_path / "p",
        {"name": "vpt-deep", "prompt_length": 2, "dropout": 0.0},
        **flags | {"train.compile": False},
    )
    assert_same_weights(compiled, plain, atol=0)


@pytest.mark.slow
def test_compile_trains_on_cpu(image_folder, tmp_path):
    result = run(image_folder, tmp_path / "c", {"name": "vpt-deep", "prompt_length": 2}, **{"train.compile": True})
    assert result.metrics["test_top1"] >= 0.75  # chance 1/3; the same run without compile reaches 1.0


@pytest.mark.parametrize(
    ("method", "start"),
    [
        ({"name": "linear"}, 6),  # every block frozen: pooled features
        ({"name": "mlp", "layers": 2}, 6),
        ({"name": "partial", "k": 2}, 4),  # tokens after depth - k blocks
        ({"name": "sidetune", "width": 8}, None),  # declares reads_images_after_pool
        ({"name": "full"}, None),  # trains_backbone
        ({"name": "vpt-deep", "prompt_length": 1}, None),  # prompts act from block 0
    ],
)
def test_cache_start_follows_declared_capabilities(method, start):
    assert cache.cache_start(tiny_model(method)) == start
