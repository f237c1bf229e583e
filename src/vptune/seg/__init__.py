"""Semantic segmentation: SETR-PUP decoder on a prompted ViT, data with joint transforms, mIoU evaluation.

See docs/segmentation.md. The task type is chosen by the data source (``offline:shapes_seg``, ``segfolder:``,
``ade20k:``) or ``--task segmentation``; every backbone-side method runs unchanged, only the head differs.
"""

from .config import SEGMENTATION, SegConfig
from .decoder import PUPDecoder, SegmentationHead
from .metrics import ConfusionMatrix

__all__ = ["SEGMENTATION", "ConfusionMatrix", "PUPDecoder", "SegConfig", "SegmentationHead"]
