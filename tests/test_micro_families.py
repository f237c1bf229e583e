"""The bundled fractal-pretrained micro Swin and micro ConvNeXt: loadable by name, offline, with the card's hash."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from vptune.backbones import create_vit, weights_hash
from vptune.backbones.catalog import bundled_models, models_report
from vptune.backbones.hub import weights_status
from vptune.backbones.micro import ASSETS
from vptune.backbones.micro_families import bundled_weights
from vptune.data.offline import list_offline_tasks
from vptune.errors import DataError
from vptune.model import build_model

BUNDLED = ["vptune_micro_swin", "vptune_micro_convnext"]
MAX_BYTES = 10 * 1024 * 1024  # the limit per bundled backbone


def card(model: str) -> dict:
    return json.loads((ASSETS / model / "MODEL_CARD.json").read_text())


@pytest.mark.parametrize("model", BUNDLED)
def test_bundled_weights_load_by_name_with_the_cards_hash(model):
    loaded = create_vit(model)  # pretrained=True by default: the bundled file, no network
    assert weights_hash(loaded) == card(model)["weights_hash"]
    assert weights_hash(loaded) != weights_hash(create_vit(model, pretrained=False))
    # the values are the file's fp16 tensors, exactly (timm's own loader, through the registered pretrained cfg)
    stored = load_file(bundled_weights(model))
    state = loaded.state_dict()
    assert set(stored) == set(state)
    assert all(torch.equal(state[k], v.float()) for k, v in stored.items())
    # timm directly, by the tag name, gives the same weights
    direct = timm.create_model(f"{model}.fractal", pretrained=True, num_classes=0)
    assert weights_hash(direct) == card(model)["weights_hash"]


@pytest.mark.parametrize("model", BUNDLED)
def test_bundled_files_are_small_fp16_and_carded_on_every_offline_task(model):
    path = ASSETS / model / f"{model}_fractal.safetensors"
    assert path.is_file() and str(path) == bundled_weights(model)
    assert path.stat().st_size <= MAX_BYTES
    assert {t.dtype for t in load_file(str(path)).values()} == {torch.float16}
    c = card(model)
    assert c["model"] == model and c["weights_file"] == path.name and c["weights_bytes"] == path.stat().st_size
    assert [row["task"] for row in c["linear_probe"]] == [t.name for t in list_offline_tasks()]
    assert (ASSETS / model / "MODEL_CARD.md").read_text().startswith(f"# {model} (fractal pre-training)")


def test_models_lists_the_bundled_families_as_available_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert bundled_models() == ["vptune_micro_convnext", "vptune_micro_swin", "vptune_micro_vit"]
    rows = {r["name"]: r for r in models_report()["models"]}
    for model in BUNDLED:
        assert rows[model]["bundled"] and rows[model]["available_offline"] and rows[model]["source"] == "bundled"
    assert "vptune_micro_resnet" not in rows  # random init only: nothing bundled to list
    assert weights_status("vptune_micro_resnet").source == "none"


def test_micro_resnet_has_no_weights_and_says_so():
    with pytest.raises(DataError, match="No pretrained weights exist for vptune_micro_resnet"):
        create_vit("vptune_micro_resnet")


@pytest.mark.parametrize(
    ("model", "method"),
    [("vptune_micro_swin", {"name": "vpt-deep", "prompt_length": 2}), ("vptune_micro_convnext", {"name": "vpt-pad"})],
)
def test_adapted_model_on_the_bundled_backbone_records_its_hash(model, method):
    adapted = build_model(model, method, 3)
    assert adapted.backbone_hash == card(model)["weights_hash"]
    assert adapted(torch.rand(2, 3, 32, 32)).shape == (2, 3)
