"""``TaskOwner``: every background task of a stream connection has one owner that ends it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("xresource.streams")

T = TypeVar("T")


class TaskOwner:
    """Starts tasks and, at ``close()``, cancels every one still running and waits for it.

    A ``TaskGroup`` needs one ``async with`` block around the tasks' whole life;
    a connection lives from ``connect()`` to ``disconnect()``, two calls, so
    this object plays that part. A task that fails is logged here, never dropped.
    """

    __slots__ = ("_closed", "_label", "_tasks")

    def __init__(self, label: str) -> None:
        self._label = label
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._label}: closed, cannot start {name}")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task %s failed", self._label, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every task (but the caller's own) and wait until each has ended."""
        self._closed = True
        await self.cancel_all()

    async def cancel_all(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait never raises the tasks' errors (_finished logs them) but does
            # let our own cancellation through.
            await asyncio.wait(tasks)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait for it to end; our own cancellation still propagates."""
    if task is None or task.done() or task is asyncio.current_task():
        return
    task.cancel()
    await asyncio.wait([task])


def cancelling() -> bool:
    """True when the current task is being cancelled (so a CancelledError is ours to re-raise)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
