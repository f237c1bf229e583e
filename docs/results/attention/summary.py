"""Per-layer attention statistics of a task vs its frozen backbone over test images (for README.md here).

    python docs/results/attention/summary.py TASK_DIR offline:digits 200
"""

from __future__ import annotations

import sys

import torch

from vptune.backbones import describe
from vptune.data import ImageDataset, build_transform, load_data, make_loader
from vptune.methods import build_method
from vptune.model import AdaptedModel
from vptune.tasks import load_task
from vptune.tasks.artifact import load_backbone_for
from vptune.viz.attention import capture_attention


def peak(m: torch.Tensor) -> torch.Tensor:
    """(B, h, w) maps -> (B,) max over mean."""
    flat = m.flatten(1)
    return flat.max(1).values / flat.mean(1)


def main(task_dir: str, spec: str, n: int) -> None:
    model, task = load_task(task_dir)
    vit, digest = load_backbone_for(task)
    info = describe(task.backbone["name"], vit)
    frozen = AdaptedModel(vit, info, build_method({"name": "linear"}, info), len(task.classes), backbone_hash=digest)
    test = load_data(spec, seed=0).split("test")
    ds = ImageDataset([test[i] for i in range(min(n, len(test)))], build_transform(task.preprocessing, train=False))
    rows: dict[str, list[torch.Tensor]] = {}
    for images, labels in make_loader(ds, 50, shuffle=False):
        t, logits = capture_attention(model, images)
        f, _ = capture_attention(frozen, images)
        rows.setdefault("correct", []).append((logits.argmax(1) == labels).float())
        for i in range(len(t.probs)):
            tc, fc = t.cls_to_patches(i).flatten(1), f.cls_to_patches(i).flatten(1)
            share = t.probs[i].mean(1)[:, 0]  # (B, K): [CLS] row
            prompt_share = share[:, t.num_prefix : t.patch_start(i)].sum(-1) + share[:, : t.prefix_keys[i]].sum(-1)
            rows.setdefault(f"share{i}", []).append(prompt_share)
            rows.setdefault(f"corr{i}", []).append(torch.nn.functional.cosine_similarity(tc - tc.mean(1, keepdim=True), fc - fc.mean(1, keepdim=True)))
            rows.setdefault(f"fpeak{i}", []).append(peak(f.cls_to_patches(i)))
            rows.setdefault(f"tpeak{i}", []).append(peak(t.cls_to_patches(i)))
            p = t.prompts_to_patches(i)
            if p is not None:
                rows.setdefault(f"ppeak{i}", []).append(peak(p))
        tr, fr = t.rollout_cls().flatten(1), f.rollout_cls().flatten(1)
        rows.setdefault("rcorr", []).append(torch.nn.functional.cosine_similarity(tr - tr.mean(1, keepdim=True), fr - fr.mean(1, keepdim=True)))
        rows.setdefault("rpeak_t", []).append(peak(t.rollout_cls()))
        rows.setdefault("rpeak_f", []).append(peak(f.rollout_cls()))
    stat = {k: torch.cat(v).mean().item() for k, v in rows.items()}
    count = len(torch.cat(rows["correct"]))
    print(f"{count} test images of {spec}, task top-1 on them {stat['correct']:.3f}")
    print("| layer | [CLS] attention to prompts | [CLS] peak/mean frozen | task | corr(task, frozen) [CLS] map | prompts peak/mean |")
    print("|---|---|---|---|---|---|")
    for i in range(model.arch.depth):
        pp = f"{stat[f'ppeak{i}']:.2f}" if f"ppeak{i}" in stat else "-"
        print(f"| {i} | {100 * stat[f'share{i}']:.1f}% | {stat[f'fpeak{i}']:.2f} | {stat[f'tpeak{i}']:.2f} | {stat[f'corr{i}']:.3f} | {pp} |")
    print(f"| rollout | | {stat['rpeak_f']:.2f} | {stat['rpeak_t']:.2f} | {stat['rcorr']:.3f} | |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
