"""Task management over HTTP (``POST``/``DELETE /v1/tasks``): off unless an admin key is configured.

Folders are only read under ``task_root`` (a path that leaves it, by ``..`` or a symlink, is refused without
saying whether it exists); the number of tasks and of private backbone copies is capped; removing a task releases
its modules (garbage collection and, on glibc, returning freed heap to the system). One change at a time.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ..tasks.multitask import MultiTaskModel
from .config import ServeConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class AddTask(BaseModel):
    """Body of ``POST /v1/tasks``: load the task folder ``path`` (relative to the server's task root)."""

    name: str = Field(pattern=NAME_PATTERN, description="task name used in predict requests (1-64 of A-Z a-z 0-9 _ -)")
    path: str = Field(min_length=1, max_length=1024, description="task folder, relative to the server's --task-root")


def resolve_under(root: Path, path: str) -> Path:
    """``root / path`` with symlinks resolved, or 403 when it is not inside ``root`` (absolute, ``..``, links)."""
    base = root.resolve()
    target = (base / path).resolve()
    if Path(path).is_absolute() or target == base or not target.is_relative_to(base):
        raise HTTPException(403, "field 'path': give a task folder inside the server's task root (relative path)")
    return target


def release_memory() -> None:
    """Collect garbage and ask glibc to return freed heap pages (large tensors freed are otherwise kept)."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            trim = ctypes.CDLL(libc_name).malloc_trim
        except (OSError, AttributeError):
            return
        trim(0)


def admin_router(bank: MultiTaskModel, config: ServeConfig) -> APIRouter:
    """``POST /v1/tasks`` and ``DELETE /v1/tasks/{name}``, behind the ``x-admin-key`` header."""
    assert config.admin_key is not None and config.task_root is not None
    admin_key, root = config.admin_key.get_secret_value().encode(), config.task_root
    changing = asyncio.Lock()

    async def check_admin(x_admin_key: str | None = Header(None)) -> None:
        if not hmac.compare_digest((x_admin_key or "").encode(), admin_key):
            raise HTTPException(401, "missing or wrong admin key: send it in the x-admin-key header")

    router = APIRouter(prefix="/v1", dependencies=[Depends(check_admin)])

    def isolated_count() -> int:
        return sum(1 for t in bank.tasks if t["mode"] == "isolated")

    def add(name: str, folder: Path) -> dict[str, Any]:
        info = bank.add_task(name, folder)
        if info["mode"] == "isolated" and isolated_count() > config.max_isolated:
            bank.remove_task(name)
            release_memory()
            raise HTTPException(
                409,
                f"task '{name}' needs a private backbone copy ({info['isolated_reason']}) and "
                f"{config.max_isolated} are loaded (the limit); remove one first",
            )
        return info

    @router.post("/tasks", status_code=201)
    async def add_task(body: AddTask) -> dict[str, Any]:
        """Load a task folder under the task root (same backbone and preprocessing as the loaded tasks)."""
        folder = resolve_under(root, body.path)
        async with changing:
            if body.name in bank.entries:
                raise HTTPException(409, f"task '{body.name}' is already loaded; DELETE /v1/tasks/{body.name} first")
            if len(bank.entries) >= config.max_tasks:
                raise HTTPException(409, f"{config.max_tasks} tasks are loaded (the limit); remove one first")
            return await run_in_threadpool(add, body.name, folder)

    @router.delete("/tasks/{name}")
    async def remove_task(name: str) -> dict[str, Any]:
        """Unload a task and free its memory; requests already queued for it fail with 404."""
        async with changing:
            await run_in_threadpool(bank.remove_task, name)
            await run_in_threadpool(release_memory)
        return {"removed": name}

    return router
