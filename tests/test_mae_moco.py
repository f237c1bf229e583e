"""MAE output (mean of non-[CLS] tokens incl. prompts, fresh fc_norm) and MoCo-v3 checkpoint loading."""

from __future__ import annotations

import pytest
import timm
import torch

from vptune.backbones import create_vit, wrap_backbone
from vptune.backbones.mae import use_mae_output
from vptune.errors import DataError
from vptune.methods import build_method
from vptune.model import AdaptedModel

MAE = "vit_base_patch16_224.mae"


SMALL = {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 32}  # the .mae tag on a small ViT


def small_mae(**kwargs):
    torch.manual_seed(0)
    return timm.create_model(MAE, pretrained=False, num_classes=0, **SMALL, **kwargs)


@pytest.fixture(scope="module")
def mae_model():
    vit = use_mae_output(small_mae())
    info = wrap_backbone(vit, MAE).info
    method = build_method({"name": "vpt-deep", "prompt_length": 2, "dropout": 0.0}, info)
    return AdaptedModel(vit, info, method, 3).eval()


def test_mae_output_is_mean_of_non_cls_tokens_then_fresh_fc_norm(mae_model):
    vit = mae_model.backbone
    assert mae_model.output == "mean-pool" and isinstance(vit.norm, torch.nn.Identity)
    assert torch.equal(vit.fc_norm.weight, torch.ones(64)) and torch.equal(vit.fc_norm.bias, torch.zeros(64))
    assert not vit.fc_norm.weight.requires_grad
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = mae_model.forward_tokens(images)  # (2, 1 + 2 + 4, 64), no final norm
        assert tokens.shape == (2, 7, 64)
        expected = torch.nn.functional.layer_norm(tokens[:, 1:].mean(dim=1), (64,), eps=1e-6)
        torch.testing.assert_close(mae_model.forward_features(images), expected)


def test_mae_without_prompts_equals_timms_avg_fc_norm_layout():
    ours = use_mae_output(small_mae()).eval()
    timm_avg = small_mae(global_pool="avg", fc_norm=True).eval()
    timm_avg.load_state_dict(ours.state_dict())
    info = wrap_backbone(ours, MAE).info
    model = AdaptedModel(ours, info, build_method({"name": "linear"}, info), 2).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.forward_features(images), timm_avg(images))


def test_create_vit_applies_the_mae_output():
    assert create_vit(MAE, pretrained=False, img_size=32).global_pool == "avg"


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
