"""What a reload changed, as events for code and as one log line each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
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
                    asyncio.ensure_future(result)
            except Exception:
                log.exception("reload event callback raised")
        for queue in self._queues:
            if queue.full():  # a consumer that does not read loses the oldest events
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    async def stream(self, maxsize: int = 1000) -> AsyncIterator[ReloadEvent]:
        queue: asyncio.Queue[ReloadEvent] = asyncio.Queue(maxsize=maxsize)
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)
