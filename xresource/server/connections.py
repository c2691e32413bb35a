"""A connection cap and a header-read deadline in front of aiohttp's request handler.

aiohttp closes idle keep-alive connections (``keepalive_timeout``) and bounds
header sizes, but releases before 3.14 have no deadline for the first request
of a connection and none has a cap on connections: 300 clients that send half
a header each hold 300 descriptors for as long as they like. Each accepted
connection's protocol is wrapped here:

- the connection must deliver its first complete header block within
  ``header_timeout`` or it is closed (later requests are covered by aiohttp's
  keep-alive timer, which closes a connection waiting for a request);
- at ``max_connections`` the oldest connection still waiting for its first
  header is closed to make room (a real client sends its header at once, so
  it is the slow ones that go), and when every connection is busy the new one
  is refused. ``/healthz`` thus keeps answering while the cap holds.

Closing is an ``abort()``: no traceback is logged, nothing is written back.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aiohttp import web


class ConnectionLimiter:
    """Counts the connections of one listening site and enforces the cap and deadline."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._waiting: dict[GuardedProtocol, None] = {}  # insertion order: oldest first
        self._active: set[GuardedProtocol] = set()
        self.timed_out = 0
        self.evicted = 0
        self.refused = 0

    @property
    def open(self) -> int:
        return len(self._waiting) + len(self._active)

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that guards what ``factory`` builds."""
        return lambda: GuardedProtocol(factory(), self)

    def admit(self, conn: GuardedProtocol) -> bool:
        if self.open >= self.max_connections:
            if not self._waiting:
                self.refused += 1
                return False
            oldest = next(iter(self._waiting))
            self.evicted += 1
            oldest.close_now()
        self._waiting[conn] = None
        return True

    def header_done(self, conn: GuardedProtocol) -> None:
        if conn in self._waiting:
            del self._waiting[conn]
            self._active.add(conn)

    def forget(self, conn: GuardedProtocol) -> None:
        self._waiting.pop(conn, None)
        self._active.discard(conn)


class GuardedProtocol(asyncio.Protocol):
    """Delegates every callback to aiohttp's protocol, watching only for the end of the first header."""

    def __init__(self, inner: asyncio.Protocol, limiter: ConnectionLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""
        self._admitted = False
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._limiter.admit(self):
            self._closed = True
            _abort(transport)
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._limiter.header_timeout, self._header_too_slow)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._deadline is not None:
            seen = self._tail + data
            # The blank line that ends a header block ("\r\n\r\n"; a lenient "\n\n" too).
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
                self._limiter.header_done(self)
            else:
                self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._closed:
            return None
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._limiter.forget(self)
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)

    def _header_too_slow(self) -> None:
        self._deadline = None
        self._limiter.timed_out += 1
        self.close_now()

    def close_now(self) -> None:
        """Drop the connection at once (and stop counting it, so the cap frees a slot now)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._limiter.forget(self)
        self._closed = True
        if self._transport is not None:
            _abort(self._transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    abort = getattr(transport, "abort", None)
    if abort is not None:
        abort()
    else:  # pragma: no cover - every stream transport has abort()
        transport.close()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with a :class:`ConnectionLimiter` around every connection."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limiter: ConnectionLimiter,
        *,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self.limiter = limiter
        self._listening: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the chosen one when 0 was asked)."""
        if self._listening is not None and self._listening.sockets:
            return int(self._listening.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._listening = await loop.create_server(
            self.limiter.wrap(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            family=socket.AF_UNSPEC,
        )
        self._server = self._listening  # what BaseSite.stop() closes
