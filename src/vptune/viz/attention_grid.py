"""``vptune visualize DIR --attention IMAGE...``: one PNG grid per image of where a task model attends.

Rows: the frozen backbone's [CLS] attention, the task model's [CLS] attention and, for methods whose prompts
are tokens, the prompts' mean attention; columns: the input image, the chosen layers, and attention rollout
(:func:`vptune.viz.attention.rollout`). Each map is the head-averaged attention to the patch grid, one cell
per patch, scaled from its own minimum (dark) to its maximum (bright); each title gives the peak over the
mean (1.0 would be uniform) and, for the task, the share of [CLS] attention that went to prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..engine.io import atomic_write
from ..errors import ConfigError
from .attention import AttentionMaps, capture_attention


def parse_layers(spec: str | None, depth: int) -> list[int]:
    """``None``/``all`` -> every block; ``"0,5,11"`` -> those (0-based); negative indices count from the end.

    Raises:
        ConfigError: A layer outside ``0..depth-1`` or not an integer.
    """
    if spec is None or spec.strip() in ("", "all"):
        return list(range(depth))
    out = []
    for part in spec.split(","):
        try:
            index = int(part)
        except ValueError:
            raise ConfigError(f"--layers '{spec}': '{part}' is not a block index; e.g. --layers 0,3,5") from None
        if not -depth <= index < depth:
            raise ConfigError(
                f"--layers '{spec}': block {index} does not exist (the backbone has {depth}: 0..{depth - 1})"
            )
        out.append(index % depth)
    return sorted(set(out))


def attention_grids(
    task_dir: str | Path,
    images: list[str | Path],
    *,
    layers: str | None = None,
    out: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Write one PNG grid per image (``OUT/attention_<stem>.png``, default OUT = the task folder).

    Returns:
        ``{"files": [PNG paths], "layers": [...], "method": name, "predictions": [top-1 label per image]}``.
    """
    from ..backbones import describe
    from ..data import build_transform
    from ..data.images import load_image
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
    frozen.to(dev)
    chosen = parse_layers(layers, model.arch.depth)
    pre = dict(task.preprocessing, augment="none")
    transform = build_transform(pre, train=False)
    out_dir = Path(out) if out else Path(task_dir)
    files, predictions = [], []
    for path in images:
        rgb = load_image(path).convert("RGB")
        batch = transform(rgb).unsqueeze(0).to(dev)  # (1, C, H, W)
        shown = np.asarray(rgb.resize(tuple(pre["input_size"][::-1])), dtype=np.float32) / 255.0  # (H, W, 3)
        task_maps, logits = capture_attention(model, batch)
        frozen_maps, _ = capture_attention(frozen, batch)
        label = task.classes[int(logits[0].argmax())]
        predictions.append(label)
        target = out_dir / f"attention_{Path(path).stem}.png"
        if str(target) in files:  # two images of the same name from different folders: keep both grids
            target = out_dir / f"attention_{Path(path).stem}_{len(files) + 1}.png"
        title = f"{task.method['name']} task {Path(task_dir).name}: {Path(path).name} -> predicted '{label}'"
        draw_grid(target, shown, frozen_maps, task_maps, chosen, title)
        files.append(str(target))
    return {"files": files, "layers": chosen, "method": task.method["name"], "predictions": predictions}


def _rows(frozen: AttentionMaps, task: AttentionMaps, layers: list[int]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(row name, [(column title, (h, w) map or None)]) for the grid; the last column is the rollout."""
    rows = [
        ("frozen [CLS]", [(f"layer {i}", frozen.cls_to_patches(i)[0]) for i in layers]),
        (
            "task [CLS]",
            [
                (f"layer {i}, {100 * task.cls_prompt_share(i):.0f}% to prompts", task.cls_to_patches(i)[0])
                for i in layers
            ],
        ),
    ]
    rows[0][1].append(("rollout", frozen.rollout_cls()[0]))
    rows[1][1].append(("rollout", task.rollout_cls()[0]))
    prompt_maps = [task.prompts_to_patches(i) for i in layers]
    if any(m is not None for m in prompt_maps):
        cols = [(f"layer {i}", None if m is None else m[0]) for i, m in zip(layers, prompt_maps)]
        rows.append(("task prompts (mean)", [*cols, ("", None)]))
    return rows


def draw_grid(
    path: Path, image: np.ndarray, frozen: AttentionMaps, task: AttentionMaps, layers: list[int], title: str
) -> None:
    """Draw the grid (see the module docstring) into ``path`` (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(frozen, task, layers)
    ncols = len(layers) + 2
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 2.3 * len(rows) + 0.4), squeeze=False)
    for r, (name, cols) in enumerate(rows):
        axes[r][0].imshow(image, interpolation="nearest")
        axes[r][0].set_ylabel(name, fontsize=8)
        axes[r][0].set_title("input" if r == 0 else "", fontsize=7)
        for c, (col_title, amap) in enumerate(cols, start=1):
            ax = axes[r][c]
            if amap is None:
                ax.set_title(col_title, fontsize=7)
                ax.axis("off")
                continue
            m = amap.float()
            peak = float(m.max() / m.mean().clamp_min(1e-12))  # 1.0: uniform over the patches
            ax.set_title(f"{col_title}\npeak {peak:.1f}x mean", fontsize=7)
            span = (m.max() - m.min()).clamp_min(1e-12)
            ax.imshow(((m - m.min()) / span).numpy(), cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
