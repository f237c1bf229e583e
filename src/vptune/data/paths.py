"""Paths read from list files (CSV, VTAB-1k lists, FGVC JSON) must stay inside the data set's folder."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath


def outside_reason(rel: str) -> str | None:
    """Why ``rel`` would leave its data set folder (absolute, a drive, ``..``); None for a plain relative path.

    The check is on the text, so it holds for files that do not exist yet; links placed inside the data set
    folder by its owner are followed as usual.
    """
    if not rel:
        return "the path is empty"
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or rel.startswith(("/", "\\", "~")):
        return f"path '{rel}' is absolute; list paths relative to the data set folder"
    if ".." in posix.parts or ".." in windows.parts:
        return f"path '{rel}' leaves the data set folder ('..'); list paths inside it"
    return None
