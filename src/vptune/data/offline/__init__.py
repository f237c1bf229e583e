"""Offline, deterministic image-classification task suite (VTAB-1k-shaped) and FractalDB-style fractals.

Everything is generated with numpy from a seed (scikit-learn's bundled digits are the only real images), so
the suite needs no network access. See ``docs/offline-tasks.md``.
"""

from vptune.data.offline.fractals import fractal_class_params, render_fractals
from vptune.data.offline.registry import (
    OfflineTask,
    export_vtab_layout,
    get_offline_task,
    list_offline_tasks,
    load_offline_task,
)

__all__ = [
    "OfflineTask",
    "export_vtab_layout",
    "fractal_class_params",
    "get_offline_task",
    "list_offline_tasks",
    "load_offline_task",
    "render_fractals",
]
