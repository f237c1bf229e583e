"""Linear probes on frozen features: logistic regression (scikit-learn) on pooled backbone features."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from .data import ImageDataset, build_transform, make_loader
from .data.sources import Sample


@torch.no_grad()
def loader_features(
    features: Callable[[torch.Tensor], torch.Tensor], loader: Iterable[Any], device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(``features(images)`` stacked (N, D), labels (N,)) over a loader; batches left empty by skipped images
    are passed over."""
    feats, labels = [], []
    for images, y in loader:
        if y.numel():
            feats.append(features(images.to(device)).float().cpu())
            labels.append(y)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def extract_features(
    vit: nn.Module, samples: Sequence[Sample], pre: dict[str, Any], batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-logit features (N, D) of a frozen timm ViT (its own pooling) and labels (N,)."""
    vit.eval()
    loader = make_loader(ImageDataset(samples, build_transform(pre, train=False)), batch_size, shuffle=False)
    device = next(vit.parameters()).device
    return loader_features(lambda x: vit.forward_head(vit.forward_features(x), pre_logits=True), loader, device)


def linear_probe(
    vit: nn.Module, train: Sequence[Sample], test: Sequence[Sample], pre: dict[str, Any], seed: int = 0
) -> float:
    """Test accuracy of a logistic-regression probe trained on frozen features of ``train``."""
    x_train, y_train = extract_features(vit, train, pre)
    x_test, y_test = extract_features(vit, test, pre)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    clf.fit(scaler.transform(x_train), y_train)
    return float((clf.predict(scaler.transform(x_test)) == y_test).mean())
