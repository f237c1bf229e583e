"""MoCo-v3 ViT checkpoints (``linear-vit-b-300ep.pth.tar``, the pre-training ``vit-b-300ep.pth.tar``) into timm.

MoCo-v3 has no timm tag: its ViT-B is timm's ``vit_base_patch16_224`` layout with a fixed 2-D sin-cos position
embedding (stored in the checkpoint as ``pos_embed``, kept as is). A checkpoint is read with
``torch.load(weights_only=True)`` (never unpickled), its ``state_dict`` entry taken when present, the
``module.base_encoder.`` / ``module.`` prefixes stripped, and the momentum encoder, predictor and heads (the
MoCo projector or the linear-probe classifier) dropped. Every other key must match the model exactly.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import DataError

MOCO_SUFFIXES = (".pth.tar", ".tar")
PREFIXES = ("module.base_encoder.", "module.")  # longest first
DROPPED_PREFIXES = ("module.momentum_encoder.", "module.predictor.")
HEAD_PREFIXES = ("head.", "fc.")
SHOWN = 8  # keys named per list in an error


def is_moco_checkpoint(path: Path) -> bool:
    """MoCo-v3 releases its checkpoints as ``*.pth.tar``."""
    return path.name.endswith(MOCO_SUFFIXES)


def read_moco_state(path: Path) -> dict[str, torch.Tensor]:
    """The backbone tensors of a MoCo-v3 checkpoint under timm's key names.

    Raises:
        DataError: The file can not be read as a tensor-only checkpoint or holds no state dict.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(
            f"weights file '{path}' is not a checkpoint that loads with torch.load(weights_only=True): {err}"
        ) from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"weights file '{path}' holds no state dict of tensors (looked at 'state_dict' and the top level)"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIXES):
            continue
        name = next((key[len(pre) :] for pre in PREFIXES if key.startswith(pre)), key)
        if not name.startswith(HEAD_PREFIXES):
            out[name] = value
    return out


def load_moco_v3(model: nn.Module, path: Path) -> None:
    """Load a MoCo-v3 checkpoint into a headless timm ViT in place.

    Raises:
        DataError: Keys of the checkpoint and the model do not match (the message names them) or shapes differ.
    """
    state = read_moco_state(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing in the checkpoint", missing), ("not in the model", unexpected)):
            if keys:
                more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
                parts.append(f"{label}: {', '.join(keys[:SHOWN])}{more}")
        parts += [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in shapes[:SHOWN]
        ]
        raise DataError(
            f"weights file '{path}' does not map onto this model ({'; '.join(parts)}); pass a MoCo-v3 ViT "
            "checkpoint with the matching --model (vit_base_patch16_224 for ViT-B)"
        )
    model.load_state_dict(state, strict=True)
