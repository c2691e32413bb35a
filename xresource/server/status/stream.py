"""The status page's Server-Sent Events, framework-free: an async iterator of SSE chunks.

The first chunk carries the whole live state; after that a new ``update`` goes
out when the registry emits an event (``Registry.events()``) or when the
figures changed at the next tick, and a comment keeps idle proxies from closing
the stream. A stream ends by itself after ``lifetime`` seconds (the browser
reconnects), so no server waits on it for long when it shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from xresource.registry import Registry
from xresource.server.status.history import StatusHistory
from xresource.server.status.render import Filters, StatusView

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # nginx: pass events through at once
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class StreamLimits:
    """Shared by the streams of one mount: how many may be open, and a switch that ends them all."""

    max_streams: int = 20
    tick: float = 2.0
    keepalive: float = 15.0
    lifetime: float = 300.0
    open: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def full(self) -> bool:
        return self.open >= self.max_streams


def chunk(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


async def status_events(
    registry: Registry, history: StatusHistory, prefix: str, limits: StreamLimits
) -> AsyncGenerator[bytes, None]:
    """Yield SSE chunks until ``limits.closing`` is set, the lifetime ends, or the consumer stops."""
    loop = asyncio.get_running_loop()
    events = registry.events()
    limits.open += 1
    last_sent = ""
    last_write = loop.time()
    ends = loop.time() + limits.lifetime
    try:
        yield b"retry: 2000\n\n"
        while not limits.closing.is_set() and loop.time() < ends:
            history.sample_if_due()
            data = json.dumps(StatusView(registry, history, prefix).fragments(Filters()))
            if data != last_sent:
                last_sent, last_write = data, loop.time()
                yield chunk("update", data)
            elif loop.time() - last_write >= limits.keepalive:
                last_write = loop.time()
                yield b": keepalive\n\n"
            await _next_change(events, limits, min(limits.tick, max(0.0, ends - loop.time())))
    finally:
        limits.open -= 1
        await events.aclose()


async def _next_change(events: AsyncIterator[object], limits: StreamLimits, timeout: float) -> None:
    """Wait for a registry event (then for the rest of its burst), the closing switch, or ``timeout``."""
    nxt = asyncio.ensure_future(anext(events))
    closing = asyncio.ensure_future(limits.closing.wait())
    try:
        done, _ = await asyncio.wait({nxt, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done and nxt.exception() is None:
            # A reload emits several events at once: render once, after the burst.
            while True:
                try:
                    await asyncio.wait_for(anext(events), 0.05)
                except TimeoutError:
                    break
    finally:
        for task in (nxt, closing):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await task
