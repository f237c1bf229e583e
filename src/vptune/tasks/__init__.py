"""Task artifacts and the multi-task bank."""

from .artifact import TaskArtifact, load_task, read_task, save_task

__all__ = ["TaskArtifact", "load_task", "read_task", "save_task"]
