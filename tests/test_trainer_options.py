"""Trainer options through timm (augmentation, Mixup/CutMix), gradient clipping, best-val weights, early stopping."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from test_engine import run_config
from torch.optim.optimizer import register_optimizer_step_pre_hook

from vptune.config import build_config
from vptune.data.transforms import build_transform
from vptune.engine.checkpoint import config_fingerprint
from vptune.engine.run import build_run
from vptune.engine.train_options import BestTracker, build_mixup
from vptune.engine.trainer import finish, fit, train
from vptune.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "timm"}


def grad_norms_of(cfg) -> list[float]:
    """The global gradient norm the optimiser sees at each step of ``fit(cfg)``."""
    norms: list[float] = []

    def before_step(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        fit(cfg)
    finally:
        handle.remove()
    return norms


def test_clip_grad_bounds_the_norm_the_optimizer_sees(image_folder, tmp_path):
    free = grad_norms_of(run_config(image_folder, tmp_path / "free", **{"train.epochs": 1}))
    limit = min(free) / 2
    clipped = grad_norms_of(
        run_config(image_folder, tmp_path / "clip", **{"train.epochs": 1, "train.clip_grad": limit})
    )
    assert len(clipped) == len(free) >= 2
    assert all(n <= limit * (1 + 1e-5) for n in clipped), (clipped, limit)
    assert all(n > limit for n in free)


def test_mixup_off_is_the_previous_run_bit_for_bit(image_folder, tmp_path):
    base = run_config(image_folder, tmp_path / "a", **{"train.epochs": 1})
    explicit = run_config(image_folder, tmp_path / "b", **{"train.epochs": 1, "data.mixup": 0.0, "data.cutmix": 0.0})
    old = base.to_dict()  # a config written before these keys existed fingerprints the same (it still resumes)
    for key in ("auto_augment", "reprob", "mixup", "cutmix", "mixup_prob", "task"):
        old["data"].pop(key)
    old.pop("seg")
    for key in ("clip_grad", "keep_best", "early_stop", "logger"):
        old["train"].pop(key)
    assert config_fingerprint(old) == config_fingerprint(base.to_dict()) == config_fingerprint(explicit.to_dict())
    a, b = fit(base).model.trainable_state_dict(), fit(explicit).model.trainable_state_dict()
    mixed = fit(run_config(image_folder, tmp_path / "c", **{"train.epochs": 1, "data.mixup": 0.8}))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], t) for n, t in mixed.model.trainable_state_dict().items())


@pytest.mark.parametrize("batch", [4, 5, 1])
def test_mixup_batches_follow_timm(batch):
    cfg = build_config(flags={"data.spec": "x", "data.mixup": 0.4, "out": "x"}).data
    mix = build_mixup(cfg, num_classes=3, label_smoothing=0.0)
    torch.manual_seed(0)
    images, labels = torch.randn(batch, 3, 8, 8), torch.arange(batch) % 3
    mixed, targets = mix(images.clone(), labels)
    assert mixed.shape == images.shape and targets.shape == (batch, 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(batch))
    even = batch - batch % 2
    if even:  # timm pairs image i with image even-1-i: x_i' = lam x_i + (1 - lam) x_flip
        lam = float(targets[0, labels[0]]) if labels[0] != labels[even - 1] else None
        if lam is not None:
            torch.testing.assert_close(mixed[0], lam * images[0] + (1 - lam) * images[even - 1], rtol=1e-5, atol=1e-5)
    if batch % 2:  # the odd one out is left as it is, with its one-hot target
        assert torch.equal(mixed[-1], images[-1]) and targets[-1, labels[-1]] == 1.0
    assert build_mixup(build_config(flags={"data.spec": "x", "out": "x"}).data, 3, 0.0) is None


def test_timm_augmentation_and_its_errors():
    tf = build_transform(PRE, train=True, auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25)
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandAugment" in names and "RandomErasing" in names and "RandomResizedCropAndInterpolation" in names
    image = Image.new("RGB", (40, 40), (200, 30, 30))
    torch.manual_seed(0)
    x = tf(image)
    assert x.shape == (3, 32, 32)
    assert build_transform(PRE, train=False)(image).shape == (3, 32, 32)  # evaluation: a plain resize
    with pytest.raises(ConfigError, match="data.auto_augment: 'nonsense'"):
        build_transform(PRE, train=True, auto_augment="nonsense")
    with pytest.raises(ConfigError, match="only with data.augment=timm"):
        build_config(flags={"data.spec": "x", "data.auto_augment": "rand-m9", "out": "x"})


def test_best_tracker_stops_on_a_scripted_curve():
    curve = [0.2, 0.5, 0.4, 0.5, 0.45, 0.9]  # best at epoch 2; patience 3 stops after epoch 5
    tracker = BestTracker(patience=3)
    stopped = None
    for epoch, top1 in enumerate(curve, start=1):
        tracker.update(epoch, top1, lambda e=epoch: {"w": torch.tensor(float(e))})
        if tracker.should_stop:
            stopped = epoch
            break
    assert (stopped, tracker.best_epoch, float(tracker.state["w"])) == (5, 2, 2.0)
    assert not BestTracker(patience=None, since_best=99).should_stop


def test_early_stopping_in_the_trainer_keeps_the_best_epoch(image_folder, tmp_path):
    cfg = run_config(image_folder, tmp_path / "run", **{"train.epochs": 8, "train.early_stop": 2})
    run = build_run(cfg, None)
    curve = iter([0.3, 0.6, 0.5, 0.6, 0.9, 0.9, 0.9, 0.9])  # best epoch 2, stop after epoch 4
    real = run.evaluate_split
    run.evaluate_split = lambda split, desc: (
        {**real(split, desc), "top1": next(curve)} if split == "val" else real(split, desc)
    )
    weights = {}

    def keep(epoch, record):
        weights[epoch + 1] = {k: v.clone() for k, v in run.model.trainable_state_dict().items()}

    train(run, on_epoch_end=keep)
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    result = finish(run)
    assert (result.metrics["best_epoch"], result.metrics["val_top1"], result.metrics["epochs_run"]) == (2, 0.6, 4)
    for name, tensor in result.model.trainable_state_dict().items():
        assert torch.equal(tensor, weights[2][name]), name
    assert not torch.equal(weights[2]["head.weight"], weights[4]["head.weight"])


def test_keep_best_needs_a_validation_split(image_folder, tmp_path):
    cfg = run_config(image_folder, tmp_path / "run", **{"train.keep_best": True, "data.val_split": None})
    with pytest.raises(ConfigError, match="need a validation split"):
        fit(cfg)


def test_best_weights_survive_a_resume(image_folder, tmp_path):
    flags = {"train.epochs": 4, "train.keep_best": True, "optim.lr": 0.5}
    whole = fit(run_config(image_folder, tmp_path / "whole", **flags))

    class Killed(Exception):
        pass

    def kill(epoch, record):
        if epoch == 2:  # after the third epoch's checkpoint
            raise Killed

    with pytest.raises(Killed):
        fit(run_config(image_folder, tmp_path / "resumed", **flags), on_epoch_end=kill)
    resumed = fit(run_config(image_folder, tmp_path / "resumed", **flags))
    assert resumed.metrics["best_epoch"] == whole.metrics["best_epoch"]
    assert resumed.metrics["test_top1"] == whole.metrics["test_top1"]
    for name, tensor in whole.model.trainable_state_dict().items():
        assert torch.equal(resumed.model.trainable_state_dict()[name], tensor), name
