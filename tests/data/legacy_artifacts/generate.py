"""Write the legacy task artifacts that tests/test_legacy_artifacts.py loads (run once, with the code of the day).

These folders were written by vptune before the backbone interface refactor (issue 11); the test checks that
they still load and predict exactly the logits stored next to them, so artifact key names stay loadable.
Usage: ``python tests/data/legacy_artifacts/generate.py`` (refuses to overwrite existing folders).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from vptune.model import build_model
from vptune.tasks import save_task

HERE = Path(__file__).resolve().parent
MODEL = "vptune_micro_vit"  # random seeded init (pretrained=False): the same weights on every machine
CLASSES = ["a", "b", "c"]
PRE = {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "augment": "none"}
METHODS = {
    "vpt-deep": {"name": "vpt-deep", "prompt_length": 1},
    "vpt-shallow": {"name": "vpt-shallow", "prompt_length": 2},
    "lora": {"name": "lora", "rank": 1},
    "adapter": {"name": "adapter", "reduction": 96},
}


def inputs() -> torch.Tensor:
    """The fixed input batch (4, 3, 32, 32) every artifact's expected logits were computed on."""
    gen = torch.Generator().manual_seed(11)
    return torch.randn(4, 3, 32, 32, generator=gen)


def main() -> None:
    expected = {}
    for name, method in METHODS.items():
        out = HERE / name
        if out.exists():
            sys.exit(f"{out} exists; delete it first to regenerate")
        torch.manual_seed(3)
        model = build_model(MODEL, method, len(CLASSES), pretrained=False)
        with torch.no_grad():  # move every trainable tensor off its init so identity-at-init can not hide a bug
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.05)
        model.eval()
        src = {"pretrained": False, "weights": None, "img_size": None}
        save_task(out, model, classes=CLASSES, preprocessing=PRE, backbone_source=src)
        with torch.no_grad():
            expected[name] = model(inputs()).contiguous()
    save_file(expected, str(HERE / "expected_logits.safetensors"))


if __name__ == "__main__":
    main()
