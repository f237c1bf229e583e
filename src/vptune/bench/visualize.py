"""``vptune visualize``: t-SNE of final pooled features for a task artifact and its frozen backbone (Figure 11).

Both panels embed the same images: the left one the features of the frozen, pre-trained backbone (the head
input of a linear probe), the right one those of the adapted model (``AdaptedModel.forward_features``). Points
are coloured by class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.io import atomic_write


def extract_features(model: torch.nn.Module, loader: Any, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, D), labels (n,)) from ``model.forward_features`` over a loader."""
    from ..probe import loader_features

    model.eval().to(device)
    return loader_features(model.forward_features, loader, device)


def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE embedding (scikit-learn), perplexity clipped to what the sample size allows."""
    from sklearn.manifold import TSNE

    perplexity = float(min(perplexity, max(2.0, (len(features) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def visualize_task(
    task_dir: str | Path,
    data_spec: str,
    *,
    split: str = "test",
    out: str | Path | None = None,
    max_images: int = 1000,
    device: str = "auto",
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Write a side-by-side t-SNE PNG (frozen backbone | task) for up to ``max_images`` images of ``split``.

    Returns:
        ``{"out": PNG path, "n": images, "classes": number of classes, "split": split}``.
    """
    from ..backbones import describe
    from ..data import ImageDataset, build_transform, load_data, make_loader
    from ..data.sources import subsample
    from ..engine.device import resolve_device
    from ..methods import build_method
    from ..model import AdaptedModel
    from ..tasks import load_task
    from ..tasks.artifact import load_backbone_for

    dev = resolve_device(device)
    model, task = load_task(task_dir, device=dev)
    vit, digest = load_backbone_for(task)
    info = describe(task.backbone["name"], vit)
    frozen = AdaptedModel(vit, info, build_method({"name": "linear"}, info), len(task.classes), backbone_hash=digest)
    data = load_data(data_spec, seed=seed)
    samples = data.split(split)
    if len(samples) > max_images:
        samples = subsample(samples, max_images / len(samples), seed)
    ds = ImageDataset(samples, build_transform(task.preprocessing, train=False))
    loader = make_loader(ds, batch_size, shuffle=False)
    frozen_feats, labels = extract_features(frozen, loader, dev)
    task_feats, _ = extract_features(model, loader, dev)
    panels = [
        (f"frozen backbone ({task.backbone['name']})", tsne_2d(frozen_feats, seed)),
        (f"{task.method['name']} task ({'/'.join(Path(task_dir).parts[-4:])})", tsne_2d(task_feats, seed)),
    ]
    path = Path(out) if out else Path(task_dir) / f"tsne_{split}.png"
    _plot(path, panels, labels, data.classes, f"t-SNE of final features, {data_spec} [{split}], {len(labels)} images")
    return {"out": str(path), "n": int(len(labels)), "classes": len(data.classes), "split": split}


def _plot(path: Path, panels: list[tuple[str, np.ndarray]], labels: np.ndarray, classes: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0))
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for ax, (name, xy) in zip(axes, panels):
        ax.scatter(xy[:, 0], xy[:, 1], c=labels % cmap.N, cmap=cmap, s=6, vmin=0, vmax=cmap.N - 1)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=cmap(i % cmap.N), label=c) for i, c in enumerate(classes)
        ]
        fig.legend(handles=handles, loc="lower center", ncols=min(10, len(classes)), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if len(classes) <= 20 else 0, 1, 0.95))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
