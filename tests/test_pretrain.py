"""``vptune pretrain`` for every micro family: fp16 weights that timm's loader reads back with the card's hash."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vptune.backbones import create_vit, weights_hash
from vptune.backbones.micro import ASSETS
from vptune.cli import main
from vptune.errors import ConfigError
from vptune.pretrain import PretrainRecipe, pretrain, render_card

# a few steps on a few fractal classes: the mechanics, not the quality
MODEL_WEIGHTS = "vptune_micro_convnext_fractal.safetensors"
TINY = ["--steps", "2", "--num-classes", "3", "--per-class", "20", "--batch-size", "16", "--probe-tasks", "cells"]


@pytest.mark.parametrize(
    ("model", "architecture"),
    [
        ("vptune_micro_swin", "Swin Transformer"),
        ("vptune_micro_convnext", "ConvNeXt"),
        ("vptune_micro_resnet", "ResNet"),
    ],
)
def test_pretrain_cli_writes_fp16_weights_and_a_card_for_each_family(tmp_path, capsys, model, architecture):
    assert main(["pretrain", "--model", model, "--out", str(tmp_path), "--no-progress", *TINY]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = json.loads((tmp_path / "MODEL_CARD.json").read_text())
    weights = tmp_path / f"{model}_fractal.safetensors"
    assert printed["weights_file"] == card["weights_file"] == weights.name
    assert card["model"] == model and card["architecture"] == architecture
    assert card["recipe"]["steps"] == 2 and card["recipe"]["num_classes"] == 3
    # every backbone tensor, in fp16, and nothing else (no classifier)
    random = create_vit(model, pretrained=False)
    tensors = load_file(str(weights))
    assert set(tensors) == set(random.state_dict())
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert card["params"] == sum(p.numel() for p in random.parameters())
    assert card["weights_bytes"] == weights.stat().st_size
    # the card's hash is that of the weights as shipped, loaded back through vptune's file loader
    shipped = create_vit(model, weights=weights)
    assert card["weights_hash"] == weights_hash(shipped) != weights_hash(random)
    # the probe ran on the requested task only, on both backbones
    [row] = card["linear_probe"]
    assert row["task"] == "cells" and 0.0 <= row["random_init"] <= 1.0 and 0.0 <= row["pretrained"] <= 1.0
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert text == render_card(card)
    assert f"A small {architecture} (" in text and f"`vptune pretrain --model {model} --steps 2 --out DIR`" in text
    assert "| cells | specialized |" in text


def test_vit_card_command_has_no_model_flag_and_old_cards_still_render():
    card = json.loads((ASSETS / "MODEL_CARD.json").read_text())  # the bundled micro ViT's, written before the change
    text = render_card(card)
    assert "A small ViT pre-trained" in text and "`vptune pretrain --steps 1000 --out DIR`" in text


def test_unknown_probe_task_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="--probe-tasks: unknown offline task 'digitz'"):
        pretrain(PretrainRecipe(model="vptune_micro_convnext", steps=1), tmp_path, probe_tasks=["digitz"])
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_recipe_rejects_unknown_fields():
    with pytest.raises(ValueError, match="modle"):
        PretrainRecipe(modle="vptune_micro_swin")


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A crash after the first epoch's checkpoint, then the same call again: the weights of an uninterrupted run."""
    import vptune.engine.trainer as trainer

    recipe = PretrainRecipe(model="vptune_micro_convnext", num_classes=3, per_class=20, steps=8, batch_size=16)
    whole = pretrain(recipe, tmp_path / "whole", progress=False, probe_tasks=["cells"])

    real_save = trainer.save_checkpoint

    def save_then_crash(out, state):
        real_save(out, state)
        raise KeyboardInterrupt("killed after the first epoch's checkpoint")

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(recipe, tmp_path / "split", progress=False, probe_tasks=["cells"])
    assert (tmp_path / "split" / "run" / "checkpoint.pt").is_file()
    assert not (tmp_path / "split" / MODEL_WEIGHTS).exists()
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    resumed = pretrain(recipe, tmp_path / "split", progress=False, probe_tasks=["cells"])
    assert resumed["resumed"] and not whole["resumed"]
    assert resumed["train_history"] == whole["train_history"]  # the checkpoint carries the first epoch's record
    assert "for the resumed part only" in (tmp_path / "split" / "MODEL_CARD.md").read_text()
    assert resumed["weights_hash"] == whole["weights_hash"]
    a, b = load_file(str(tmp_path / "whole" / MODEL_WEIGHTS)), load_file(str(tmp_path / "split" / MODEL_WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)
