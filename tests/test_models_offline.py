"""Offline availability of backbone weights: `vptune models`, fast one-line failures, cached weights, dry runs."""

from __future__ import annotations

import json
import time

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from vptune.backbones import create_vit
from vptune.backbones.hub import WeightsUnavailableError, weights_status
from vptune.cli import main

HUB_MODEL = "vit_tiny_patch16_224"  # hub weights that no test machine has cached
TEST_REPO = "timm/test_vit.r160_in1k"  # timm's tiny test ViT (0.3 M parameters), hub weights


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so that nothing cached on the machine running the tests counts."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hub_offline(empty_hf_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return empty_hf_cache


@pytest.fixture
def hub_unreachable(empty_hf_cache, monkeypatch):
    """Network 'on' but the hub unreachable: the probe goes through a proxy port where nothing listens."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    return empty_hf_cache


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_the_bundled_model_as_available_offline(empty_hf_cache, capsys):
    code, out, _ = run(["models", "--json"], capsys)
    report = json.loads(out)
    rows = {r["name"]: r for r in report["models"]}
    assert code == 0
    assert rows["vptune_micro_vit"]["available_offline"] and rows["vptune_micro_vit"]["bundled"]
    assert rows["vptune_micro_vit"]["source"] == "bundled"
    assert not rows["vit_base_patch16_224.orig_in21k"]["available_offline"]  # empty cache: would download
    assert {f["module"] for f in report["families"]} == {
        "vision_transformer",
        "deit",
        "swin_transformer",
        "convnext",
        "resnet",
    }


@pytest.mark.parametrize("network", ["hub_offline", "hub_unreachable"])
@pytest.mark.parametrize("command", ["train", "tune"])
def test_hub_model_offline_fails_fast_with_one_line(network, command, request, image_folder, tmp_path, capsys):
    request.getfixturevalue(network)
    args = [command, "--model", HUB_MODEL, "--data", f"folder:{image_folder}", "--epochs", "1"]
    start = time.monotonic()
    code, _, err = run([*args, "--out", tmp_path / "out"], capsys)
    assert time.monotonic() - start < 10
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for part in (HUB_MODEL, "--weights FILE", "--no-pretrained", "vptune_micro_vit", "vptune models"):
        assert part in err
    assert ("HF_HUB_OFFLINE" if network == "hub_offline" else "127.0.0.1:9 cannot be reached") in err


def test_advice_names_only_the_commands_flags(hub_offline):
    with pytest.raises(WeightsUnavailableError) as info:
        create_vit(HUB_MODEL, pretrained=True)
    text = info.value.message({"--model"})
    assert "--weights" not in text and "--no-pretrained" not in text and "--model vptune_micro_vit" in text


def test_dry_run_downloads_nothing(hub_offline, image_folder, capsys):
    code, out, err = run(
        ["train", "--model", HUB_MODEL, "--data", f"folder:{image_folder}", "--dry-run", "--json"], capsys
    )
    info = json.loads(out)
    # ViT-Ti/16: width 192, 12 blocks; vpt-deep p=10 -> 12 * 10 * 192 prompt parameters
    assert code == 0 and info["method_params"] == 12 * 10 * 192 and info["head_params"] == 192 * 3 + 3, err


def _cache_weights(cache, repo: str, state: dict[str, torch.Tensor]) -> None:
    """Lay out a Hugging Face cache entry as huggingface_hub writes it (refs/main -> snapshots/COMMIT/file)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    save_file(state, str(folder / "snapshots" / commit / "model.safetensors"))


def test_cached_hub_weights_load_offline_and_are_listed(hub_offline, capsys):
    source = timm.create_model("test_vit", pretrained=False)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # differs from any random init
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    _cache_weights(hub_offline, TEST_REPO, state)

    assert weights_status("test_vit").available_offline
    vit = create_vit("test_vit", pretrained=True)
    loaded = vit.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded and not k.startswith("head"))
    code, out, _ = run(["models", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows["test_vit.r160_in1k"]["available_offline"]
