"""Feature caching: run the frozen start of the network once per image and train only the rest.

A method whose trainable part starts late says so through :meth:`vptune.methods.Method.frozen_prefix_blocks`
(linear: every block is frozen). Without augmentation the frozen part maps each image to the same tensor in
every epoch, so it is computed once (eval mode, no gradients) and the training loop feeds these tensors to a
:class:`CachedTail` that runs only the remaining blocks and the head. Batching, data order and the RNG are
those of the uncached run, so results match it up to float rounding.

Features are kept on the CPU in a small in-process store keyed by backbone weights, preprocessing, cut point
and sample list, so later runs in the same process (grid points of ``vptune tune``) reuse them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import ImageDataset
from ..model import AdaptedModel

MAX_STORED = 4  # feature sets kept in memory for reuse by later runs in this process
_STORE: OrderedDict[str, FeatureSet] = OrderedDict()


class FeatureSet(torch.utils.data.Dataset):
    """Cached features aligned with a sample list; a sample that could not be read is None (skipped)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor) -> None:
        self.features, self.labels, self.kept = features, labels, kept
        self.row = torch.cumsum(kept.long(), 0) - 1  # sample index -> row in features

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        if not self.kept[i]:
            return None
        r = int(self.row[i])
        return self.features[r], int(self.labels[r])

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


def cache_start(model: AdaptedModel) -> int | None:
    """Blocks whose output the cache holds (depth: pooled features), or None when the method can't be cached."""
    method = model.method
    start = method.frozen_prefix_blocks()
    if start is None or not 1 <= start <= model.arch.depth or method.trains_backbone:
        return None
    if method.reads_images_after_pool:  # e.g. a side network: pooled features alone do not give the logits
        return None
    return start


def feature_shape(model: AdaptedModel, start: int, image_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of one cached item: (D,) when every block is frozen, else (tokens, D)."""
    if start == model.arch.depth:
        return (model.info.embed_dim,)
    with torch.no_grad():
        device = next(model.parameters()).device
        return tuple(frozen_features(model, torch.zeros(1, *image_shape, device=device), start).shape[1:])


@torch.no_grad()
def frozen_features(model: AdaptedModel, images: torch.Tensor, start: int) -> torch.Tensor:
    """The frozen part of the forward: tokens after ``start`` blocks, or pooled pre-head features."""
    if start == model.arch.depth:
        return model.forward_features(images)
    return model.forward_blocks(model.embed(images), 0, start)


class CachedTail(nn.Module):
    """The trainable rest of an :class:`AdaptedModel`, fed with cached features instead of images.

    Args:
        model: The full model (its parameters are the ones trained).
        start: Index of the first block to run (depth: only the head).
    """

    def __init__(self, model: AdaptedModel, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start
        self.num_classes = model.num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.start == m.arch.depth:
            return m.forward_head(features)
        x = m.forward_blocks(features, self.start)
        return m.forward_head(m.pool(m.arch.finish(x)))  # no images: cached methods never read them


def samples_digest(samples: Sequence[Any]) -> str:
    """Content hash of a sample list: file paths by name, in-memory arrays by bytes, and the labels."""
    h = hashlib.sha256()
    for item, label in samples:
        if isinstance(item, np.ndarray):
            h.update(hashlib.sha1(np.ascontiguousarray(item).tobytes()).digest())
        else:
            h.update(str(Path(item)).encode() if isinstance(item, (str, Path)) else repr(item).encode())
        h.update(f"|{label};".encode())
    return h.hexdigest()


def cache_key(model: AdaptedModel, start: int, pre: dict[str, Any], samples: Sequence[Any], skip_bad: bool) -> str:
    parts = {
        "backbone": model.backbone_hash,
        "model": model.info.name,
        "start": start,
        "method": model.method.name if start < model.arch.depth else model.output,
        "pre": pre,
        "skip": skip_bad,
        "samples": samples_digest(samples),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class _Indexed(torch.utils.data.Dataset):
    """(image, label, index) per readable sample, None for an unreadable one that is skipped."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | None:
        item = self.dataset[i]
        return None if item is None else (item[0], item[1], i)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    kept = [it for it in items if it is not None]
    if not kept:
        return None
    return torch.stack([k[0] for k in kept]), torch.tensor([k[1] for k in kept]), torch.tensor([k[2] for k in kept])


def build_features(
    model: AdaptedModel,
    dataset: ImageDataset,
    start: int,
    device: torch.device,
    batch_size: int,
    autocast: Any,
    num_workers: int = 0,
) -> FeatureSet:
    """Run the frozen part over ``dataset`` once (eval mode, no gradients); features land on the CPU."""
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    kept = torch.zeros(len(dataset), dtype=torch.bool)
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            images, y, index = batch
            with autocast():
                feats = frozen_features(model, images.to(device), start)
            chunks.append(feats.float().cpu())
            labels.append(y)
            kept[index] = True
    model.train(was_training)
    feats = torch.cat(chunks) if chunks else torch.empty(0)
    ys = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    return FeatureSet(feats, ys, kept)


def cached_features(
    model: AdaptedModel,
    dataset: ImageDataset,
    start: int,
    *,
    pre: dict[str, Any],
    device: torch.device,
    batch_size: int,
    autocast: Any,
    max_gb: float,
    num_workers: int = 0,
    verbose: bool = True,
) -> FeatureSet | None:
    """The feature set of ``dataset`` (from the in-process store or computed now), or None when too large."""
    shape = feature_shape(model, start, (3, *pre["input_size"]))
    size = len(dataset) * int(np.prod(shape)) * 4
    if size > max_gb * 1e9:
        if verbose:
            print(
                f"vptune: feature cache skipped: {size / 1e9:.1f} GB > train.feature_cache_max_gb={max_gb}",
                file=sys.stderr,
            )
        return None
    key = cache_key(model, start, pre, dataset.samples, dataset.skip_bad)
    if key in _STORE:
        _STORE.move_to_end(key)
        return _STORE[key]
    features = build_features(model, dataset, start, device, batch_size, autocast, num_workers)
    _STORE[key] = features
    while len(_STORE) > MAX_STORED:
        _STORE.popitem(last=False)
    return features


def clear_store() -> None:
    """Forget every cached feature set (frees memory)."""
    _STORE.clear()
