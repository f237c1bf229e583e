"""Training engine: schedule, weight decay groups, resume equivalence, artifacts written atomically."""

from __future__ import annotations

import json

import pytest
import torch

from vptune.config import build_config
from vptune.engine.device import flush_denormals
from vptune.engine.optim import build_optimizer, warmup_cosine
from vptune.engine.trainer import fit
from vptune.errors import VptuneError
from vptune.tasks import read_task


def run_config(data_dir, out, **flags):
    base = {
        "model.name": "vptune_micro_vit",
        "model.pretrained": False,
        "data.spec": f"folder:{data_dir}",
        "method.name": "vpt-deep",
        "method.prompt_length": 2,
        "train.epochs": 3,
        "train.batch_size": 8,
        "optim.lr": 0.05,
        "optim.scale_lr": False,  # the step size itself (the defaults scale by batch/256)
        "optim.weight_decay": 1e-4,
        "train.progress": False,
        "out": str(out),
    }
    base.update(flags)
    return build_config(flags=base)


def test_warmup_then_cosine_per_iteration():
    f = warmup_cosine(4, 20)
    assert [round(f(s), 3) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(12) == pytest.approx(0.5) and f(20) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


@pytest.mark.parametrize("enabled", [True, False])
def test_flush_denormals_only_inside_the_block(enabled):
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    subnormal = (tiny * 1e-10).item()  # 1e-40 is subnormal in fp32
    assert subnormal != 0.0
    with flush_denormals(enabled):
        inside = (tiny * 1e-10).item()
    if torch.set_flush_denormal(False):  # False where the CPU cannot flush; then nothing is asserted
        assert (inside == 0.0) is enabled
    assert (tiny * 1e-10).item() == subnormal


def test_fit_flushes_denormals_during_training_only(image_folder, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: seen.append(on) or True)
    fit(run_config(image_folder, tmp_path / "on", **{"train.epochs": 1}))
    fit(run_config(image_folder, tmp_path / "off", **{"train.epochs": 1, "train.flush_denormal": False}))
    assert seen == [True, False]


def test_no_weight_decay_on_biases_and_head_bias(image_folder, tmp_path):
    from conftest import tiny_model

    model = tiny_model({"name": "vpt-deep", "prompt_length": 2})
    cfg = run_config(image_folder, tmp_path).optim
    groups = build_optimizer(model, cfg, 8).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.head.bias) not in decayed
    assert id(model.head.weight) in decayed and id(model.method.prompts) in decayed


def test_train_writes_artifact_metrics_and_removes_checkpoint(image_folder, tmp_path):
    result = fit(run_config(image_folder, tmp_path / "run"))
    out = tmp_path / "run"
    assert (out / "task.json").is_file() and (out / "task.safetensors").is_file()
    assert not (out / "checkpoint.pt").exists()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if "epoch" in x] == [1, 2, 3] and lines[-1]["split"] == "test"
    task = read_task(out)
    assert task.meta["metrics"]["test_n"] == 9
    # colour-coded classes are easy: chance is 1/3, the run reaches 1.0 (seeds 0, 1, 2 measured)
    assert result.metrics["test_top1"] >= 0.75
    assert not list(out.glob(".*.tmp"))


def test_resumed_run_equals_uninterrupted_run(image_folder, tmp_path):
    flags = {"train.epochs": 3, "method.dropout": 0.2}  # dropout: RNG state must be restored too
    straight = fit(run_config(image_folder, tmp_path / "a", **flags)).model

    def crash_after_first_epoch(epoch, record):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(run_config(image_folder, tmp_path / "b", **flags), on_epoch_end=crash_after_first_epoch)
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / "task.json").exists()
    resumed = fit(run_config(image_folder, tmp_path / "b", **flags)).model
    for (name, a), (_, b) in zip(straight.trainable_state_dict().items(), resumed.trainable_state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_with_other_settings_is_refused(image_folder, tmp_path):
    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(run_config(image_folder, tmp_path / "c"), on_epoch_end=stop)
    with pytest.raises(VptuneError, match="other settings"):
        fit(run_config(image_folder, tmp_path / "c", **{"optim.lr": 0.5}))


def test_grad_accumulation_matches_large_batch(image_folder, tmp_path):
    """Two micro-batches of 9 accumulate to the same update as one batch of 18 (no dropout, fixed order)."""
    common = {
        "train.epochs": 1,
        "method.dropout": 0.0,
        "data.val_split": None,
        "optim.warmup_epochs": 0.0,
        "optim.momentum": 0.0,
    }
    big = fit(run_config(image_folder, tmp_path / "big", **{**common, "train.batch_size": 18})).model
    acc = fit(
        run_config(image_folder, tmp_path / "acc", **{**common, "train.batch_size": 9, "train.grad_accum": 2})
    ).model
    torch.testing.assert_close(big.method.prompts, acc.method.prompts, rtol=1e-4, atol=1e-6)


def test_linear_learns_a_separable_task(image_folder, tmp_path):
    flags = {"method.name": "linear", "train.epochs": 8, "optim.lr": 0.1, "method.head_init": "small"}
    flags.pop("method.prompt_length", None)
    cfg = build_config(
        flags={
            "model.name": "vptune_micro_vit",
            "model.pretrained": False,
            "data.spec": f"folder:{image_folder}",
            "train.batch_size": 6,
            "train.progress": False,
            "out": str(tmp_path / "lin"),
            **flags,
        }
    )
    assert fit(cfg).metrics["test_top1"] >= 0.8


def test_resume_refuses_a_checkpoint_with_other_tensors(image_folder, tmp_path):
    """Resume checks the checkpoint holds exactly the trainable tensors and names what differs."""
    flags = {"train.epochs": 2}

    def crash(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(run_config(image_folder, tmp_path, **flags), on_epoch_end=crash)
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["model"]["method.extra"] = state["model"].pop("method.prompts")
    torch.save(state, path)
    with pytest.raises(VptuneError, match=r"missing keys \['method.prompts'\], unexpected keys \['method.extra'\]"):
        fit(run_config(image_folder, tmp_path, **flags))
