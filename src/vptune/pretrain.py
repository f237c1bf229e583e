"""``vptune pretrain``: pre-train a micro backbone on generated fractals with vptune's own engine.

The recipe (FractalDB-style formula-driven supervised pre-training) is data: :class:`PretrainRecipe`; its
``model`` is any supported timm architecture, made from random init (the bundled ``vptune_micro_vit``,
``vptune_micro_swin`` and ``vptune_micro_convnext`` were made this way). The result is the backbone's weights
in fp16 safetensors plus a model card with the recipe, upstream accuracy, wall time, hardware and a
linear-probe transfer check on every offline task (pretrained vs random init). The training run checkpoints
every epoch under ``OUT/run``: the same command again resumes an interrupted pre-training.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .backbones import create_vit, weights_hash
from .config import build_config
from .data import TaskData, preprocessing_config
from .data.offline_source import ArraySamples
from .data.sources import carve_val
from .engine.checkpoint import CHECKPOINT_FILE
from .engine.io import atomic_write, write_json
from .errors import ConfigError


class PretrainRecipe(BaseModel):
    """Upstream data and optimisation; defaults are the recipe that made the bundled weights."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("vptune_micro_vit", description="timm architecture to pre-train (random init)")
    num_classes: int = Field(100, ge=2, description="fractal classes (one IFS each)")
    per_class: int = Field(100, ge=2, description="images per class (each with jittered IFS, colour, flip)")
    image_size: int = Field(32, ge=8)
    seed: int = 0
    steps: int = Field(1000, ge=1, description="optimiser steps")
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    val_fraction: float = 0.05


def fractal_task(recipe: PretrainRecipe) -> TaskData:
    """The generated upstream dataset as a TaskData with a seeded held-out split."""
    from .data.offline.fractals import render_fractals

    images, labels = render_fractals(recipe.num_classes, recipe.per_class, recipe.image_size, recipe.seed)
    samples = list(ArraySamples(images, labels))
    train, val = carve_val(samples, recipe.val_fraction, recipe.seed)
    classes = [f"ifs_{i:03d}" for i in range(recipe.num_classes)]
    return TaskData(name="fractals", classes=classes, splits={"train": train, "val": val}, spec="fractals")


# timm class -> the family named in the model card
ARCHITECTURES = {
    "VisionTransformer": "ViT",
    "SwinTransformer": "Swin Transformer",
    "ConvNeXt": "ConvNeXt",
    "ResNet": "ResNet",
}


def architecture_name(model: nn.Module) -> str:
    """The family of a timm backbone in words (``ViT``, ``Swin Transformer``, ...), else its class name."""
    return ARCHITECTURES.get(type(model).__name__, type(model).__name__)


def check_probe_tasks(tasks: Sequence[str] | None) -> None:
    """Fail early on a probe task that is not an offline task.

    Raises:
        ConfigError: An unknown name (the message lists the offline tasks).
    """
    from .data.offline import get_offline_task

    for name in tasks or ():
        try:
            get_offline_task(name)
        except ValueError as err:
            raise ConfigError(f"--probe-tasks: {err}") from None


def probe_offline_tasks(
    vit: torch.nn.Module, random_vit: torch.nn.Module, tasks: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Linear-probe accuracy per offline task for the given backbone and a random-init twin.

    Args:
        vit: The pre-trained backbone (timm, no classifier).
        random_vit: The same architecture at random init.
        tasks: Offline task names to probe (default: every offline task, as the model cards report).
    """
    from .data.offline import list_offline_tasks, load_offline_task
    from .probe import linear_probe

    pre = preprocessing_config(vit, "imagenet")
    rows = []
    for task in list_offline_tasks():
        if tasks is not None and task.name not in tasks:
            continue
        splits = load_offline_task(task.name)
        train, test = ArraySamples(*splits["train800val200"]), ArraySamples(*splits["test"])
        rows.append(
            {
                "task": task.name,
                "group": task.group,
                "pretrained": linear_probe(vit, train, test, pre),
                "random_init": linear_probe(random_vit, train, test, pre),
            }
        )
    return rows


def pretrain(
    recipe: PretrainRecipe, out_dir: str | Path, *, progress: bool = True, probe_tasks: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train ``recipe.model`` on fractals, write ``<model>_fractal.safetensors`` and ``MODEL_CARD.{md,json}``.

    Args:
        recipe: Upstream data and optimisation (``recipe.model`` is created at random init).
        out_dir: Output folder; the training run (checkpointed every epoch) lives in ``out_dir/run``, so
            calling again with the same recipe and folder resumes an interrupted pre-training.
        progress: Show progress bars.
        probe_tasks: Offline tasks for the card's linear-probe check (default: all of them).
    """
    from .engine.trainer import fit

    check_probe_tasks(probe_tasks)  # before training, not after 40 minutes of it
    out = Path(out_dir)
    data = fractal_task(recipe)
    steps_per_epoch = math.ceil(len(data.splits["train"]) / recipe.batch_size)
    cfg = build_config(
        flags={
            "model.name": recipe.model,
            "model.pretrained": False,
            "data.spec": "fractals",
            "data.normalize": "imagenet",
            "method.name": "full",
            "method.head_init": "small",
            "optim.optimizer": "adamw",
            "optim.lr": recipe.lr,
            "optim.scale_lr": False,
            "optim.weight_decay": recipe.weight_decay,
            "optim.warmup_epochs": recipe.warmup_steps / steps_per_epoch,
            "train.max_steps": recipe.steps,
            "train.batch_size": recipe.batch_size,
            "train.seed": recipe.seed,
            "train.val_every": 2,
            "train.progress": progress,
            "out": str(out / "run"),
        }
    )
    resumed = (out / "run" / CHECKPOINT_FILE).is_file()  # an interrupted call left its last epoch's checkpoint
    start = time.perf_counter()
    result = fit(cfg, data=data)
    wall = time.perf_counter() - start
    vit = result.model.backbone.eval().cpu()
    tensors = {k: v.detach().half().contiguous().clone() for k, v in vit.state_dict().items()}
    weights = out / f"{recipe.model}_fractal.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    # the probe uses the weights exactly as shipped (fp16 round trip), through timm's own loader
    shipped = create_vit(recipe.model, weights=weights)
    random_vit = create_vit(recipe.model, pretrained=False)
    card = {
        "model": recipe.model,
        "architecture": architecture_name(shipped),
        "params": sum(p.numel() for p in shipped.parameters()),
        "weights_file": weights.name,
        "weights_hash": weights_hash(shipped),
        "weights_bytes": weights.stat().st_size,
        "recipe": recipe.model_dump(),
        "upstream_val_top1": result.metrics.get("val_top1"),
        "train_history": [
            {"epoch": h["epoch"], "loss": h["train"]["loss"], "val_top1": h.get("val", {}).get("top1")}
            for h in result.history
        ],
        "wall_seconds": round(wall, 1),
        "resumed": resumed,
        "hardware": {
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "versions": {"vptune": __version__, "torch": torch.__version__},
        "linear_probe": probe_offline_tasks(shipped, random_vit, probe_tasks),
    }
    write_json(out / "MODEL_CARD.json", card)
    atomic_write(out / "MODEL_CARD.md", lambda tmp: Path(tmp).write_text(render_card(card)))
    return card


def refresh_probe(out_dir: str | Path) -> dict[str, Any]:
    """Re-run the linear-probe transfer check on the weights in ``out_dir`` and rewrite its model card.

    For when the offline tasks change: the weights and the rest of the card stay as they are.
    """
    out = Path(out_dir)
    card = json.loads((out / "MODEL_CARD.json").read_text())
    shipped = create_vit(card["model"], weights=out / card["weights_file"])
    card["linear_probe"] = probe_offline_tasks(shipped, create_vit(card["model"], pretrained=False))
    write_json(out / "MODEL_CARD.json", card)
    atomic_write(out / "MODEL_CARD.md", lambda tmp: Path(tmp).write_text(render_card(card)))
    return card


def render_card(card: dict[str, Any]) -> str:
    """The model card as Markdown."""
    r = card["recipe"]
    arch = card.get("architecture", "ViT")  # cards written before the field existed are the micro ViT's
    size = f" ({card['params'] / 1e6:.2f} M parameters)" if "params" in card else ""
    model_flag = "" if card["model"] == "vptune_micro_vit" else f" --model {card['model']}"
    lines = [
        f"# {card['model']} (fractal pre-training)",
        "",
        f"A small {arch}{size} pre-trained by `vptune pretrain` on formula-driven fractal images",
        "(FractalDB-style iterated function systems) generated on the fly: no downloaded data, no overlap with the",
        "downstream offline tasks.",
        "",
        "## Recipe",
        "",
        f"- data: {r['num_classes']} IFS classes x {r['per_class']} images, {r['image_size']}x{r['image_size']}, "
        f"seed {r['seed']} (per image: jittered IFS coefficients, random colour, random flip); "
        f"{int(r['val_fraction'] * 100)}% held out",
        f"- optimisation: AdamW, lr {r['lr']}, weight decay {r['weight_decay']}, batch {r['batch_size']}, "
        f"{r['warmup_steps']} warmup steps then cosine, {r['steps']} steps, fp32",
        f"- command: `vptune pretrain{model_flag} --steps {r['steps']} --out DIR`",
        "",
        "## Result",
        "",
        f"- upstream held-out top-1: {card['upstream_val_top1']:.4f}",
        f"- wall time: {card['wall_seconds'] / 60:.1f} min on {card['hardware']['cpus']} CPU(s) "
        f"({card['hardware']['processor']}, {card['hardware']['torch_threads']} torch threads)"
        + (" for the resumed part only (the run resumed from a checkpoint)" if card.get("resumed") else "")
        + (f", GPU {card['hardware']['cuda']}" if card["hardware"]["cuda"] else ""),
        f"- weights: `{card['weights_file']}`, fp16 safetensors, {card['weights_bytes'] / 1e6:.2f} MB, "
        f"hash {card['weights_hash']}",
        "",
        "## Transfer check: linear probe on frozen features (logistic regression, train800val200 -> test)",
        "",
        "| task | group | pretrained | random init | gain |",
        "|---|---|---|---|---|",
    ]
    for row in card["linear_probe"]:
        gain = row["pretrained"] - row["random_init"]
        lines.append(
            f"| {row['task']} | {row['group']} | {row['pretrained']:.3f} | {row['random_init']:.3f} | {gain:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main_summary(card: dict[str, Any]) -> str:
    return json.dumps({k: card[k] for k in ("weights_file", "upstream_val_top1", "wall_seconds")}, indent=2)
