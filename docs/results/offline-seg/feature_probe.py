"""How much shape information the frozen micro ViT's last-layer patch tokens carry for offline:shapes_seg.

A per-patch linear probe: each 32x32 scene (the 48 px scene resized, no augmentation) gives 8x8 patch tokens of
the last block; each token's target is the majority class of its 4x4 pixels. A logistic regression (full batch,
Adam, 300 steps, standardised features) is fitted on the 800 train scenes and scored on the 200 val scenes, for
the bundled fractal-pretrained weights and for a random init of the same architecture.

    python docs/results/offline-seg/feature_probe.py          # about a minute on one CPU core
"""

from __future__ import annotations

import numpy as np
import timm
import torch
from torch.nn import functional as F

import vptune.backbones  # noqa: F401  (registers vptune_micro_vit)
from vptune.data.offline.shapes_seg import CLASSES, load_shapes_seg

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def tokens(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 48, 48, 3) scenes -> last-block patch tokens (N * 64, D)."""
    x = torch.from_numpy(images.copy()).float().permute(0, 3, 1, 2) / 255.0  # (N,H,W,3)->(N,3,H,W)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        t = model.forward_features((x - MEAN) / STD)[:, model.num_prefix_tokens :]  # (N, 64, D)
    return t.reshape(-1, t.shape[-1])


def patch_targets(masks: np.ndarray) -> torch.Tensor:
    """uint8 (N, 48, 48) masks -> majority class of each 4x4 patch of the 32x32 mask, (N * 64,)."""
    m = torch.from_numpy(masks.copy())[:, None].float()
    m = F.interpolate(m, size=(32, 32), mode="nearest")[:, 0].long()
    patches = m.unfold(1, 4, 4).unfold(2, 4, 4).reshape(m.shape[0], 8, 8, 16)  # (N, 8, 8, 4*4 pixels)
    return F.one_hot(patches, len(CLASSES)).sum(-2).argmax(-1).reshape(-1)


def probe(pretrained: bool) -> dict[str, float | list[float]]:
    """Fit the per-patch probe on train, score it on val."""
    torch.manual_seed(0)
    model = timm.create_model("vptune_micro_vit", pretrained=pretrained).eval()
    data = load_shapes_seg()
    x_tr, y_tr = tokens(model, data["train"][0]), patch_targets(data["train"][1])
    x_va, y_va = tokens(model, data["val"][0]), patch_targets(data["val"][1])
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_va = (x_tr - mu) / sd, (x_va - mu) / sd
    head = torch.nn.Linear(x_tr.shape[1], len(CLASSES))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(head(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = head(x_va).argmax(-1)
    iou = [
        ((pred == c) & (y_va == c)).sum().item() / max(((pred == c) | (y_va == c)).sum().item(), 1)
        for c in range(len(CLASSES))
    ]
    return {"patch_acc": (pred == y_va).float().mean().item(), "patch_miou": float(np.mean(iou)), "iou": iou}


def main() -> None:
    torch.set_num_threads(1)
    print("| weights | val patch accuracy | val patch mIoU | " + " | ".join(CLASSES) + " |")
    print("|---" * (3 + len(CLASSES)) + "|")
    for pretrained in (True, False):
        r = probe(pretrained)
        name = "fractal-pretrained" if pretrained else "random init"
        iou = " | ".join(f"{100 * v:.1f}" for v in r["iou"])  # type: ignore[union-attr]
        print(f"| {name} | {100 * r['patch_acc']:.1f} | {100 * r['patch_miou']:.1f} | {iou} |")


if __name__ == "__main__":
    main()
