"""``TaskSet``: the owner of a registry's background tasks.

Every task the registry starts (retries, background connects, retiring old
versions, reloads from the watcher or SIGHUP, async event callbacks) is
spawned here, held by a strong reference until it ends, and logged if it
fails. ``close()`` cancels what still runs and awaits all of it, so nothing
the registry started outlives ``stop()`` and nothing is left to ``__del__``.
(An ``asyncio.TaskGroup`` would need one ``async with`` block spanning the
registry's life, and one failing task would cancel the rest.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("xresource.registry")

T = TypeVar("T")


class TaskSet:
    """A set of owned tasks that can be waited for, or cancelled and waited for."""

    __slots__ = ("_closed", "_tasks")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``coro`` as an owned task (cancelled at once if the set is closed)."""
        task = asyncio.create_task(coro, name=name)
        if self._closed:
            task.cancel()  # stopping: it never runs, and is still awaited by whoever awaits it
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every task (including those spawned meanwhile) has ended."""
        while pending := self._others():
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task and wait until all have ended; later spawns are cancelled at once."""
        self._closed = True
        while pending := self._others():
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def reopen(self) -> None:
        self._closed = False

    def _others(self) -> list[asyncio.Task[Any]]:
        # The task that closes the set (a SIGHUP reload that stops the registry, say) is not
        # waited for by itself.
        current = asyncio.current_task()
        return [t for t in self._tasks if t is not current]
