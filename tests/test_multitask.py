"""MultiTaskModel: mixed-task batches in one backbone pass equal each task's own Predictor."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, tiny_model
from PIL import Image

from vptune.backbones import describe, weights_hash
from vptune.errors import ArtifactError
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.predict import Predictor
from vptune.tasks import read_task, save_task
from vptune.tasks.artifact import attach_task
from vptune.tasks.multitask import MultiTaskModel, UnknownTaskError
from vptune.tasks.planner import PLANS
from vptune.tasks.race import Race

pytestmark = pytest.mark.usefixtures("one_thread")

PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
SRC = {"pretrained": False, "weights": None, "img_size": None}
# name -> (method, classes); the ISOLATED ones change backbone weights or compute: served per sub-batch each on its
# own backbone copy; the others share the backbone (LoRA, bias, adapter: their terms added per sample)
TASKS: dict[str, tuple[dict, int]] = {
    "deep": ({"name": "vpt-deep", "prompt_length": 2}, 3),
    "shallow": ({"name": "vpt-shallow", "prompt_length": 5}, 4),
    "linear": ({"name": "linear"}, 5),
    "late": ({"name": "vpt-deep", "prompt_length": 7, "layers": [3, 5], "output": "image-pool"}, 3),
    "shared": ({"name": "vpt-deep", "prompt_length": 3, "sharing": "shared-inter", "projection_dim": 8}, 2),
    "pooled": ({"name": "vpt-shallow", "prompt_length": 4, "output": "prompt-pool"}, 2),
    "empty": ({"name": "vpt-deep", "prompt_length": 0, "output": "global-pool"}, 2),
    "side": ({"name": "sidetune", "width": 8}, 3),
    "bitfit": ({"name": "bias"}, 4),
    "mlp": ({"name": "mlp", "layers": 2, "hidden_dim": 16}, 3),
    "added": ({"name": "vpt-shallow", "prompt_length": 3, "location": "add"}, 2),
    "pixel": ({"name": "vpt-shallow", "prompt_length": 2, "location": "prepend-pixel"}, 2),
    "lora": ({"name": "lora", "rank": 2}, 2),
    "lora2": ({"name": "lora", "rank": 3, "alpha": 6.0, "targets": ["qkv", "proj", "fc1", "fc2"]}, 3),
    "prefix": ({"name": "vpt-prefix", "prompt_length": 3}, 3),
    "adapter": ({"name": "adapter", "reduction": 16}, 2),
}
ISOLATED = {
    "added": "location 'add'",
    "pixel": "location 'prepend-pixel'",
    "prefix": "method 'vpt-prefix'",
}


@functools.lru_cache(maxsize=1)
def micro_backbone() -> tuple[torch.nn.Module, str]:
    """The seeded random micro ViT (as tiny_model builds it), created once: copies are much faster."""
    model = tiny_model({"name": "linear"}, 2)
    return model.backbone, model.backbone_hash


def fresh_model(method: dict, num_classes: int) -> AdaptedModel:
    """``tiny_model(method, num_classes)`` on a copy of the cached backbone."""
    vit, digest = micro_backbone()
    vit = copy.deepcopy(vit)
    info = describe(TINY, vit)
    torch.manual_seed(0)
    return AdaptedModel(vit, info, build_method(method, info), num_classes, backbone_hash=digest)


def reference(path: Path) -> Predictor:
    """The task's own Predictor, as ``vptune predict`` builds it (on a copy of the same backbone weights)."""
    task = read_task(path)
    vit, digest = micro_backbone()
    return Predictor(attach_task(task, copy.deepcopy(vit), digest), task)


def save_tiny_task(out: Path, method: dict, num_classes: int, seed: int, **changes) -> Path:
    """A task artifact on the micro ViT with random (seeded) trained tensors."""
    pre = changes.pop("pre", PRE)
    model = fresh_model(method, num_classes)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
    for key, value in changes.items():
        setattr(model, key, value)
    classes = [f"c{i}" for i in range(num_classes)]
    save_task(out, model, classes=classes, preprocessing=pre, backbone_source=SRC)
    return out


def build_artifacts(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Save the TASKS (or the named subset) under ``root``."""
    names = names or list(TASKS)
    return {n: save_tiny_task(root / n, *TASKS[n], seed=i) for i, n in enumerate(TASKS) if n in names}


def make_images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    return build_artifacts(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def bank(artifacts) -> MultiTaskModel:
    return MultiTaskModel.from_dirs(artifacts)


@pytest.mark.parametrize("plan", PLANS)
def test_mixed_batch_equals_each_task_predictor(bank, artifacts, plan):
    bank.planner.mode = plan
    names = list(TASKS)[::-1] + list(TASKS) + ["deep"]  # interleaved, every task twice or more
    images = make_images(len(names))
    assert [t["name"] for t in bank.tasks if t["mode"] == "isolated"] == list(ISOLATED)
    with torch.no_grad():
        logits = bank(bank.preprocess(images), names)
        for name in TASKS:
            rows = [i for i, n in enumerate(names) if n == name]
            expected = reference(artifacts[name]).logits([images[i] for i in rows])  # (rows, classes)
            got = torch.stack([logits[i] for i in rows])
            assert got.shape == (len(rows), TASKS[name][1])
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    preds = bank.predict(images[:2], ["linear", "deep"], top_k=10)
    assert [len(p) for p in preds] == [5, 3] and preds[1][0]["label"].startswith("c")


def test_raced_plans_all_equal_each_task_predictor(bank, artifacts):
    """auto races a recurring batch over several plans: every batch of the race gives the same logits."""
    bank.set_plan("auto")
    bank.planner.race_after, bank.planner.race_trials, bank.planner.race_recheck = 2, 1, 2
    bank.planner.races.clear()  # earlier tests' compositions
    names = ["deep", "shallow", "late", "linear", "deep", "late"]
    images = make_images(len(names))
    x = bank.preprocess(images)
    with torch.no_grad():
        expected = {
            n: reference(artifacts[n]).logits([images[i] for i, m in enumerate(names) if m == n]) for n in names
        }
        for _ in range(40):  # until the race has settled (near-ties are timed up to 8 times)
            races = [r for r in bank.planner.races.values() if isinstance(r, Race)]
            if races and races[0].settled:
                break
            logits = bank(x, names)
            for name in set(names):
                got = torch.stack([logits[i] for i, n in enumerate(names) if n == name])
                torch.testing.assert_close(got, expected[name], atol=1e-4, rtol=1e-4)
    races = [r for r in bank.planner.races.values() if isinstance(r, Race)]
    assert len(races) == 1 and races[0].settled and len(races[0].shapes) >= 2


@pytest.mark.parametrize("plan", ["padded", "varlen"])
def test_both_attention_paths_hide_padding(bank, plan):
    """A p=2 sample alone equals the same sample next to a p=7 task, with fused and non-fused attention."""
    bank.planner.mode = plan
    x = bank.preprocess(make_images(3, seed=1))
    with torch.no_grad():
        alone = bank(x[:1], ["deep"])[0]
        for fused in (True, False):
            for block in bank.backbone.blocks:
                block.attn.fused_attn = fused
            mixed = bank(x, ["deep", "late", "shallow"])[0]
            torch.testing.assert_close(mixed, alone, atol=1e-5, rtol=1e-5)
    for block in bank.backbone.blocks:
        block.attn.fused_attn = True


def test_isolated_task_leaves_shared_backbone_untouched(bank):
    assert weights_hash(bank.backbone) == bank.digest
    info = {t["name"]: t for t in bank.tasks}
    assert all(why in info[name]["isolated_reason"] for name, why in ISOLATED.items())
    mem = bank.memory_bytes()
    assert mem["backbone"] < mem["total"] and mem["tasks"] > mem["backbone"]  # prefix holds a backbone copy


def test_add_and_remove_at_run_time(artifacts, tmp_path):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    x = bank.preprocess(make_images(2))
    bank.add_task("lin", artifacts["linear"])
    assert bank.task_names == ["deep", "lin"] and len(bank(x, ["lin", 0])[0]) == 5
    bank.remove_task("deep")
    with pytest.raises(UnknownTaskError, match="unknown task 'deep'; loaded tasks: lin"):
        bank(x, ["deep", "lin"])
    with pytest.raises(UnknownTaskError):
        bank.remove_task("deep")
    with pytest.raises(ArtifactError, match="already loaded"):
        bank.add_task("lin", artifacts["linear"])
    with pytest.raises(ArtifactError, match="task name 'a b' is invalid"):
        bank.add_task("a b", artifacts["linear"])
    with pytest.raises(ArtifactError, match="is not a task folder"):
        bank.add_task("missing", tmp_path / "nope")


def test_other_backbone_or_preprocessing_rejected(artifacts, tmp_path):
    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    other = copy.deepcopy(micro_backbone()[0])
    with torch.no_grad():
        other.blocks[0].norm1.weight.add_(0.01)
    save_tiny_task(tmp_path / "h", {"name": "linear"}, 2, seed=9, backbone_hash=weights_hash(other))
    with pytest.raises(ArtifactError, match="weights hash .* but the backbone at hand"):
        bank.add_task("other", tmp_path / "h")
    save_tiny_task(tmp_path / "p", {"name": "linear"}, 2, seed=9, pre={**PRE, "interpolation": "bicubic"})
    with pytest.raises(ArtifactError, match="preprocesses images with"):
        bank.add_task("pre", tmp_path / "p")
    assert bank.task_names == ["deep"]


@pytest.mark.parametrize("name", ["linear", "lora", "bitfit", "prefix"])  # shared, per-sample edits x2, a copy
def test_add_task_builds_the_task_without_holding_the_lock(artifacts, monkeypatch, name):
    """Loading a task's tensors (and copying the backbone) must not pause predictions on the loaded tasks."""
    import threading

    from vptune.tasks import multitask

    bank = MultiTaskModel.from_dirs({"deep": artifacts["deep"]})
    free: list[bool] = []

    def probe(*args, **kwargs):
        got = []  # another thread (a prediction) tries the lock while the task is being built
        thread = threading.Thread(target=lambda: got.append(bank.lock.acquire(timeout=5) and bank.lock.release()))
        thread.start()
        thread.join()
        free.append(got == [None])
        return attach_task(*args, **kwargs)

    monkeypatch.setattr(multitask, "attach_task", probe)
    bank.add_task(name, artifacts[name])
    assert free == [True] and bank.task_names == ["deep", name]
