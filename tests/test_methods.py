"""Every method and option through the same checks, on a tiny random ViT (CPU, offline)."""

from __future__ import annotations

import functools

import pytest
import torch
from cases_baselines import BASELINE_CASES
from cases_core import CORE_CASES
from cases_prompt import PROMPT_CASES
from conftest import TINY, tiny_model

from vptune.backbones import create_vit, weights_hash
from vptune.methods.base import methods_for
from vptune.tasks import load_task, save_task

CASES = CORE_CASES + PROMPT_CASES + BASELINE_CASES
NUM_CLASSES = 5


def ids(cases):
    return [c["id"] for c in cases]


@pytest.fixture(scope="module", params=CASES, ids=ids(CASES))
def case(request):
    model = tiny_model(request.param["method"], NUM_CLASSES)
    return request.param, model


def test_output_shape(case, images):
    _, model = case
    model.eval()
    assert model(images).shape == (2, NUM_CLASSES)


def test_trainable_parameter_count(case):
    spec, model = case
    assert model.parameter_summary()["trainable_params"] == spec["params"]


def test_only_trainable_parameters_receive_gradients(case, images):
    _, model = case
    model.train()
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1]))
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} requires grad but received none"
        else:
            assert p.grad is None, f"frozen {name} received a gradient"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_frozen_modules_stay_in_eval_mode(case):
    _, model = case
    model.train()
    if model.method.trains_backbone:
        assert model.backbone.training
        return
    for name, module in model.backbone.named_modules():
        trainable = getattr(module, "vptune_trainable", False)
        assert module.training == trainable, f"backbone module '{name}' training={module.training}"
    assert model.head.training


def test_save_load_round_trip_is_bit_identical(case, images, tmp_path):
    spec, model = case
    with torch.no_grad():  # move trainable tensors away from their init so the test means something
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    model.eval()
    src = {"pretrained": False, "weights": None, "img_size": None}
    pre = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
    save_task(tmp_path, model, classes=[f"c{i}" for i in range(NUM_CLASSES)], preprocessing=pre, backbone_source=src)
    loaded, task = load_task(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    numel += sum(b.numel() for b in model.method.buffers())
    size = task.tensor_bytes
    assert 4 * numel <= size <= 4 * numel + 64 * 1024, f"artifact {size} bytes for {numel} fp32 values"


@functools.lru_cache(maxsize=1)
def fresh_backbone() -> torch.nn.Module:
    """A freshly created micro ViT with tiny_model's weights that no method ever touched."""
    return create_vit(TINY, pretrained=False).eval()


def test_identity_methods_reproduce_frozen_features(case, images):
    """An identity-at-init method gives exactly the features of a fresh backbone with the same weights.

    The reference is a separate, untouched backbone: the adapted model's own backbone carries the method's
    modules (LoRA, adapters, ...), so comparing against it could not catch a wrong initialisation.
    """
    spec, _ = case
    if not spec["identity"]:
        pytest.skip("method is not an identity at initialisation")
    model = tiny_model(spec["method"], NUM_CLASSES).eval()  # not the shared case model: other tests perturb it
    vit = fresh_backbone()
    assert weights_hash(vit) == model.backbone_hash  # same weights, different modules
    with torch.no_grad():
        ours = model.forward_features(images)
        theirs = vit.forward_head(vit.forward_features(images), pre_logits=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_case_tables_cover_every_method():
    assert {c["method"]["name"] for c in CASES} == set(methods_for("vit"))  # the tiny model is a ViT
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("method", [{"name": "lora", "rank": 2}, {"name": "adapter", "reduction": 16}])
def test_identity_check_catches_a_wrong_init(method, images):
    """The fresh-backbone reference sees a method module that does not start at zero (its own backbone would not)."""
    model = tiny_model(method, NUM_CLASSES).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if p.requires_grad and name.endswith(("lora_B.weight", "adapter.up.weight")):
                p.add_(torch.randn_like(p) * 0.1)  # random: a constant shift would vanish in the LayerNorms
        ours = model.forward_features(images)
        own = model.backbone.forward_head(model.backbone.forward_features(images), pre_logits=True)
        fresh = fresh_backbone().forward_head(fresh_backbone().forward_features(images), pre_logits=True)
    torch.testing.assert_close(ours, own)  # the old reference: blind to the wrong init
    assert not torch.allclose(ours, fresh, rtol=1e-5, atol=1e-5)
