"""What the training run needs for a segmentation task: the task type, datasets, split evaluation, metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..config import RunConfig
from ..data import TaskData
from ..errors import ConfigError
from .config import CLASSIFICATION, SEGMENTATION, TaskKindMeta
from .data import SegDataset
from .evaluate import evaluate_segmentation
from .transforms import seg_eval_transform, seg_train_transform


def resolve_task(cfg: RunConfig, data: TaskData) -> str:
    """``data.task`` (auto: the data source's), refusing a task the data can not provide."""
    wanted = data.task if cfg.data.task == "auto" else cfg.data.task
    if wanted != data.task:
        kinds = {SEGMENTATION: "masks (offline:shapes_seg, segfolder:ROOT, ade20k:ROOT)", CLASSIFICATION: "labels"}
        raise ConfigError(
            f"data.task: '{wanted}' needs data with {kinds[wanted]}, but '{cfg.data.spec}' holds {data.task} data; "
            f"drop --task or use other data"
        )
    return wanted


def base_size(cfg: RunConfig, data: TaskData) -> int | None:
    """Short side at evaluation scale 1.0: the data source's (offline:shapes_seg: 64), else the crop size."""
    return data.base_size


def train_dataset(cfg: RunConfig, data: TaskData, pre: dict[str, Any], samples: Any, skip: bool) -> SegDataset:
    """Training samples through the joint random resize / crop / flip / photometric transform."""
    size = base_size(cfg, data) or min(pre["input_size"])
    scale = (
        cfg.seg.scale_range[0] * size / min(pre["input_size"]),
        cfg.seg.scale_range[1] * size / min(pre["input_size"]),
    )
    tf = seg_train_transform(pre, scale, cfg.seg.photometric)
    return SegDataset(samples, tf, data.num_classes, skip, data.reduce_labels)


def split_evaluator(
    cfg: RunConfig, data: TaskData, pre: dict[str, Any], model: torch.nn.Module, device: torch.device, autocast: Any
) -> Callable[[str, str], dict[str, Any]]:
    """``evaluate(split, desc)`` -> mIoU / pixel accuracy / per-class IoU (``seg.eval_mode``) of one split."""

    def evaluate(split: str, desc: str) -> dict[str, Any]:
        ds = SegDataset(
            data.split(split), seg_eval_transform(pre), data.num_classes, cfg.data.skip_bad_images, data.reduce_labels
        )
        return evaluate_segmentation(
            model,
            ds,
            device,
            (int(pre["input_size"][0]), int(pre["input_size"][1])),
            data.classes,
            base_size=base_size(cfg, data),
            mode=cfg.seg.eval_mode,
            scales=cfg.seg.eval_scales,
            stride=cfg.seg.eval_stride,
            autocast=autocast,
            desc=desc,
            progress=cfg.train.progress,
        )

    return evaluate


def task_meta(cfg: RunConfig, data: TaskData) -> dict[str, Any]:
    """``task.json`` field ``task`` for a segmentation run."""
    return TaskKindMeta(
        type=SEGMENTATION,
        decoder=cfg.seg.decoder_meta(),
        base_size=base_size(cfg, data),
        eval_stride=cfg.seg.eval_stride,
        eval_scales=list(cfg.seg.eval_scales),
        reduce_labels=data.reduce_labels,
    ).model_dump(mode="json")
