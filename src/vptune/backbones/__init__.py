"""Backbones: timm Vision Transformers wrapped through their public seams."""

from . import micro  # noqa: F401  (registers vptune_micro_vit with timm)
from .hashing import weights_hash
from .timm_vit import BackboneInfo, create_vit, describe

__all__ = ["BackboneInfo", "create_vit", "describe", "weights_hash"]
