"""Task artifacts written by an earlier vptune (before the backbone interface) still load and predict the same.

The folders under tests/data/legacy_artifacts/ were written by ``generate.py`` there with the code of commit
25d02ae; their logits on a fixed input batch are stored next to them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vptune.tasks import load_task

HERE = Path(__file__).resolve().parent / "data" / "legacy_artifacts"
NAMES = ["vpt-deep", "vpt-shallow", "lora", "adapter"]


def legacy_inputs() -> torch.Tensor:
    """The batch generate.py computed the stored logits on (4, 3, 32, 32)."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(11))


@pytest.mark.parametrize("name", NAMES)
def test_legacy_artifact_loads_and_predicts_identically(name):
    expected = load_file(str(HERE / "expected_logits.safetensors"))[name]
    model, task = load_task(HERE / name)
    assert task.method["name"] == name
    with torch.no_grad():
        assert torch.equal(model(legacy_inputs()), expected)
