"""An asyncio micro-batcher: concurrent requests are queued and run together in one forward pass.

A batch is flushed when it holds ``max_batch`` items or ``max_wait_ms`` passed since its first item arrived; it
runs in one worker thread (one forward at a time, the event loop stays free), while the next batch gathers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

RunFn = Callable[[list[torch.Tensor], list[Any]], Sequence[Any]]
"""(images, task keys) -> one result per item; a result that is an Exception fails only its own item.

A task key is whatever the caller queued with the image: the HTTP app queues the task's name together with the
task entry it resolved, so a batch runs exactly the task the request saw (not one re-added under its name)."""


class QueueFullError(RuntimeError):
    """The bounded queue has no room for a request's images."""


@dataclass
class _Item:
    image: torch.Tensor  # (C, H, W), preprocessed
    task: Any  # a task key (see RunFn)
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Queue images of any task and run them in micro-batches through ``run`` on a worker thread.

    Args:
        run: The batch function, called in the worker thread.
        max_batch: Most items per forward pass.
        max_wait_ms: Longest time the first item of a batch waits for more items.
        max_queue: Most items waiting; :meth:`submit` raises :class:`QueueFullError` beyond it.
    """

    def __init__(self, run: RunFn, max_batch: int = 32, max_wait_ms: float = 5.0, max_queue: int = 1024) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vptune-batch")
        self.stats = {"batches": 0, "items": 0, "largest_batch": 0}
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        """Items waiting in the queue."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the worker on the running event loop (again if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop, self._queue = loop, asyncio.Queue(maxsize=self.max_queue)
        self._worker = loop.create_task(self._work(), name="vptune-batcher")

    async def stop(self) -> None:
        """Stop the worker; waiting requests fail."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))

    def close(self) -> None:
        """Release the worker thread."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def has_room(self, count: int) -> bool:
        """Whether ``count`` more items fit in the queue now (checked before costly decoding)."""
        return self.pending + count <= self.max_queue

    async def submit(self, images: Sequence[torch.Tensor], tasks: Sequence[Any]) -> list[Any]:
        """Queue images (each (C, H, W)) with their task keys; returns their results in order.

        Raises:
            QueueFullError: Not enough room in the queue for all images (none is queued).
        """
        await self.start()
        assert self._queue is not None and self._loop is not None
        if self._queue.qsize() + len(images) > self.max_queue:
            raise QueueFullError(f"server busy: {self._queue.qsize()} images queued (limit {self.max_queue})")
        items = [_Item(img, task, self._loop.create_future()) for img, task in zip(images, tasks)]
        for item in items:
            self._queue.put_nowait(item)
        results = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    async def _collect(self) -> list[_Item]:
        """Wait for one item, then gather more until ``max_batch`` or the wait deadline."""
        assert self._queue is not None and self._loop is not None
        batch = [await self._queue.get()]
        deadline = self._loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = deadline - self._loop.time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return [item for item in batch if not item.future.done()]  # drop requests whose client went away

    async def _work(self) -> None:
        assert self._loop is not None
        while True:
            batch = await self._collect()
            if not batch:
                continue
            images, tasks = [it.image for it in batch], [it.task for it in batch]
            try:
                results = await self._loop.run_in_executor(self.executor, self.run, images, tasks)
            except Exception as err:  # noqa: BLE001  (the batch fails, the server keeps serving)
                results = [err] * len(batch)
            self.stats["batches"] += 1
            self.stats["items"] += len(batch)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
            for item, result in zip(batch, results):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
