"""Coalesced reloads: a burst of ``POST /reload`` runs one or two reloads, not one per request.

A request that arrives while no reload runs starts one. A request that arrives
while one runs cannot use it (the folder may have been read before the change
it announces), so it waits for the next one, which every request arriving
meanwhile shares. N requests thus cost at most two reloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs ``action`` for callers of :meth:`run`, sharing runs as described in the module docstring."""

    def __init__(self, action: Callable[[], Awaitable[T]]) -> None:
        self._action = action
        self._running: asyncio.Task[T] | None = None
        self._next: asyncio.Task[T] | None = None
        self.runs = 0

    async def run(self) -> T:
        """The result of a run that started after this call (a waiter's cancellation leaves it running)."""
        if self._next is None or self._next.done():  # done: cancelled before it started
            self._next = asyncio.create_task(self._after(self._running), name="xresource-reload")
            self._next.add_done_callback(_retrieve)
        return await asyncio.shield(self._next)

    async def _after(self, previous: asyncio.Task[T] | None) -> T:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        me = asyncio.current_task()
        self._running, self._next = self._next, None  # from now on, new callers queue behind this run
        self.runs += 1
        try:
            return await self._action()
        finally:
            if self._running is me:
                self._running = None

    async def cancel(self) -> None:
        """Cancel the queued and the running run (on shutdown)."""
        tasks = [t for t in (self._next, self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _retrieve(task: asyncio.Task[T]) -> None:
    # Every waiter may have gone (cancelled): mark the outcome as seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()
