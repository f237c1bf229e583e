"""Data sources, preprocessing and loaders."""

from .loaders import ImageDataset, make_loader
from .sources import TaskData, load_data
from .transforms import build_transform, preprocessing_config

__all__ = ["ImageDataset", "TaskData", "build_transform", "load_data", "make_loader", "preprocessing_config"]
