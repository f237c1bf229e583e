"""Shared fixtures: a tiny randomly initialised ViT and generated image data. Nothing downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vptune.model import AdaptedModel, build_model

TINY = "vptune_micro_vit"  # 32x32 input, patch 4, width 192, 6 blocks; random init in tests


def tiny_model(method: dict, num_classes: int = 5, **kwargs) -> AdaptedModel:
    """A method on the micro ViT with seeded random weights."""
    torch.manual_seed(0)
    return build_model(TINY, method, num_classes, pretrained=False, **kwargs)


def make_image_folder(root: Path, classes=("cat", "dog", "fox"), n_train=6, n_val=2, n_test=3, size=24) -> Path:
    """train/val/test class folders of small PNGs whose colour depends on the class (learnable)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:
            continue
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                arr[..., c % 3] += 180
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster than several on a busy machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data")


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32)
