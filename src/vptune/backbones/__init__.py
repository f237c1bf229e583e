"""Backbones: timm models wrapped through their public seams, behind one interface (:class:`Backbone`)."""

from . import (
    micro,  # noqa: F401  (registers vptune_micro_vit with timm)
    vit,  # noqa: F401  (registers the ViT family)
)
from .hashing import weights_hash
from .interface import FAMILIES, Backbone, BackboneInfo, Stage, TokenLayout, register_family, wrap_backbone
from .timm_vit import create_vit, describe

__all__ = [
    "FAMILIES",
    "Backbone",
    "BackboneInfo",
    "Stage",
    "TokenLayout",
    "create_vit",
    "describe",
    "register_family",
    "weights_hash",
    "wrap_backbone",
]
