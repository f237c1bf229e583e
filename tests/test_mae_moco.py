"""MAE output (mean of non-[CLS] tokens incl. prompts, fresh fc_norm) and MoCo-v3 checkpoint loading."""

from __future__ import annotations

import pytest
import timm
import torch

from vptune.backbones import create_vit
from vptune.errors import DataError
from vptune.model import build_model

MAE = "vit_base_patch16_224.mae"


@pytest.fixture(scope="module")
def mae_model():
    torch.manual_seed(0)
    return build_model(MAE, {"name": "vpt-deep", "prompt_length": 2, "dropout": 0.0}, 3, pretrained=False).eval()


def test_mae_output_is_mean_of_non_cls_tokens_then_fresh_fc_norm(mae_model):
    vit = mae_model.backbone
    assert mae_model.output == "mean-pool" and isinstance(vit.norm, torch.nn.Identity)
    assert torch.equal(vit.fc_norm.weight, torch.ones(768)) and torch.equal(vit.fc_norm.bias, torch.zeros(768))
    assert not vit.fc_norm.weight.requires_grad
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = mae_model.forward_tokens(images)  # (1, 1 + 2 + 196, 768), no final norm
        expected = torch.nn.functional.layer_norm(tokens[:, 1:].mean(dim=1), (768,), eps=1e-6)
        torch.testing.assert_close(mae_model.forward_features(images), expected)


def test_mae_without_prompts_equals_timms_avg_fc_norm_layout():
    ours = create_vit(MAE, pretrained=False).eval()
    timm_avg = timm.create_model(MAE, pretrained=False, num_classes=0, global_pool="avg", fc_norm=True).eval()
    timm_avg.load_state_dict(ours.state_dict())
    images = torch.randn(1, 3, 224, 224)
    model = build_model(MAE, {"name": "linear"}, 2, pretrained=False).eval()
    model.backbone.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), timm_avg(images))


def moco_checkpoint(path, vit, pretrain: bool, extra: dict | None = None):
    prefix = "module.base_encoder." if pretrain else "module."
    state = {prefix + k: v.clone() for k, v in vit.state_dict().items()}
    state[prefix + "head.weight"] = torch.zeros(10, 192)
    if pretrain:
        state["module.momentum_encoder.cls_token"] = torch.zeros(1, 1, 192)
        state["module.predictor.0.weight"] = torch.zeros(4, 4)
    state.update(extra or {})
    torch.save({"epoch": 300, "arch": "vit_base", "state_dict": state}, path)


@pytest.mark.parametrize("pretrain", [False, True])
def test_moco_checkpoint_loads_with_prefixes_stripped_and_heads_dropped(tmp_path, pretrain):
    torch.manual_seed(5)
    source = timm.create_model("vptune_micro_vit", pretrained=False, num_classes=0)
    path = tmp_path / "linear-vit-micro.pth.tar"
    moco_checkpoint(path, source, pretrain)
    loaded = create_vit("vptune_micro_vit", weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key  # pos_embed (sin-cos in MoCo) kept as stored


def test_moco_checkpoint_with_unmatched_keys_names_them(tmp_path):
    source = timm.create_model("vptune_micro_vit", pretrained=False, num_classes=0)
    path = tmp_path / "odd.pth.tar"
    moco_checkpoint(path, source, False, {"module.extra_token": torch.zeros(1)})
    with pytest.raises(DataError, match="not in the model: extra_token"):
        create_vit("vptune_micro_vit", weights=path)
    state = {k: v for k, v in torch.load(path, weights_only=True)["state_dict"].items() if "blocks.0.attn" not in k}
    torch.save({"state_dict": state}, path)
    with pytest.raises(DataError, match=r"missing in the checkpoint: blocks\.0\.attn\.proj\.bias"):
        create_vit("vptune_micro_vit", weights=path)


def test_moco_checkpoint_that_needs_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(DataError, match="weights_only"):
        create_vit("vptune_micro_vit", weights=path)
