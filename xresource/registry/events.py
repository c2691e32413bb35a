"""What a reload changed, as events for code and as one log line each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from xresource.errors import Problem

log = logging.getLogger("xresource.registry")

EventKind = Literal["added", "replaced", "removed", "rejected", "failed", "recovered"]


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """One change to what runs (or a change that was refused)."""

    kind: EventKind
    name: str | None
    generation: int | None = None
    path: str | None = None
    errors: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)

    def describe(self) -> str:
        who = self.name or "(file)"
        text = f"{self.kind} {who}"
        if self.generation is not None:
            text += f" generation={self.generation}"
        if self.path:
            text += f" path={self.path}"
        if self.errors:
            text += ": " + "; ".join(self.errors)
        return text


@dataclass(slots=True)
class ReloadResult:
    """The outcome of one ``Registry.reload()``."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)

    @property
    def outcome(self) -> str:
        if self.problems or self.rejected:
            return "rejected" if not self.changed else "partial"
        return "applied" if self.changed else "unchanged"


EventCallback = Callable[[ReloadEvent], object]


class EventHub:
    """Fans events out to callbacks and async iterators, and logs each."""

    def __init__(self) -> None:
        self._callbacks: list[EventCallback] = []
        self._queues: set[asyncio.Queue[ReloadEvent]] = set()
        self._tasks: set[asyncio.Future[object]] = set()  # async callbacks still running

    def add_callback(self, callback: EventCallback) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def emit(self, event: ReloadEvent) -> None:
        level = logging.WARNING if event.kind in ("rejected", "failed") else logging.INFO
        log.log(level, "reload: %s", event.describe())
        for callback in list(self._callbacks):
            try:
                result = callback(event)
                if asyncio.iscoroutine(result):
                    # Held until done: the loop keeps only a weak reference to a task.
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                log.exception("reload event callback raised")
        for queue in self._queues:
            if queue.full():  # a consumer that does not read loses the oldest events
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def _callback_done(self, task: asyncio.Future[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reload event callback raised", exc_info=task.exception())

    def stream(self, maxsize: int = 1000) -> EventStream:
        """An async iterator of the events emitted from this call on (not from its first await)."""
        return EventStream(self._queues, maxsize)


class EventStream:
    """Events for one consumer. It subscribes when created, so no event between the call and
    the first ``await`` is lost (an async generator would only subscribe on its first step);
    ``aclose()`` unsubscribes."""

    def __init__(self, queues: set[asyncio.Queue[ReloadEvent]], maxsize: int) -> None:
        self._queues = queues
        self._queue: asyncio.Queue[ReloadEvent] = asyncio.Queue(maxsize=maxsize)
        queues.add(self._queue)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ReloadEvent:
        if self._queue not in self._queues:
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        self._queues.discard(self._queue)

    def __del__(self) -> None:
        self._queues.discard(self._queue)
