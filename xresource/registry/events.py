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
from xresource.registry.diff import FieldChange
from xresource.registry.tasks import TaskSet

log = logging.getLogger("xresource.registry")

EventKind = Literal["added", "replaced", "updated", "removed", "rejected", "failed", "recovered"]


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """One change to what runs (or a change that was refused)."""

    kind: EventKind
    name: str | None
    generation: int | None = None
    path: str | None = None
    errors: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)
    changes: tuple[FieldChange, ...] = ()
    """Why: each changed field, old -> new, as written (a secret shows as its reference)."""
    secrets_rotated: tuple[str, ...] = ()
    """References (``${file:...}``) whose file content changed."""

    def describe(self) -> str:
        who = self.name or "(file)"
        text = f"{self.kind} {who}"
        if self.generation is not None:
            text += f" generation={self.generation}"
        if self.path:
            text += f" path={self.path}"
        why = [c.describe() for c in self.changes] + [f"secret {r} rotated" for r in self.secrets_rotated]
        if why:
            text += " changed: " + ", ".join(why)
        if self.errors:
            text += ": " + "; ".join(self.errors)
        return text


@dataclass(slots=True)
class ReloadResult:
    """The outcome of one ``Registry.reload()``."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    """Changed in place (only live fields changed): same instance, generation up."""
    removed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    """Names whose file was still being written; applied by a follow-up reload once it settles."""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.updated or self.removed)

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
        self._tasks = TaskSet()  # async callbacks still running; awaited (cancelled) at close

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
                    self._tasks.spawn(result, name=f"xresource-event-{event.kind}")
            except Exception:
                log.exception("reload event callback raised")
        for queue in self._queues:
            if queue.full():  # a consumer that does not read loses the oldest events
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def close(self) -> None:
        """Cancel async callbacks still running and wait for them (the registry stops)."""
        await self._tasks.close()

    def reopen(self) -> None:
        self._tasks.reopen()

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
