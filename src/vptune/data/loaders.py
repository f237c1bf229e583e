"""Datasets and loaders that stream images, skipping unreadable ones only when asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .images import load_image
from .sources import Sample


class ImageDataset(Dataset):
    """Decodes one (item, label) at a time; an unreadable image raises, or yields None when skipping."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, skip_bad: bool = False) -> None:
        self.samples, self.transform, self.skip_bad = samples, transform, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        item, label = self.samples[i]
        try:
            return self.transform(load_image(item)), label
        except DataError:
            if self.skip_bad:
                return None
            raise


class Batch(tuple):
    """(images, labels) plus ``skipped``: how many unreadable images were left out of this batch."""

    skipped: int = 0


def collate(items: list[Any]) -> Batch:
    kept = [it for it in items if it is not None]
    if kept:
        images = torch.stack([im for im, _ in kept])
        labels = (
            torch.stack([lb for _, lb in kept])  # segmentation: (B, H, W) label maps
            if isinstance(kept[0][1], torch.Tensor)
            else torch.tensor([lb for _, lb in kept], dtype=torch.long)
        )
    else:
        images, labels = torch.empty(0), torch.empty(0, dtype=torch.long)
    batch = Batch((images, labels))
    batch.skipped = len(items) - len(kept)
    return batch


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    sampler: Any = None,
) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed`` (resumable, reproducible)."""
    generator = torch.Generator().manual_seed(seed) if shuffle and sampler is None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=False,
    )
