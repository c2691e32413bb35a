"""Where stream contract tests get their messages from: one ``Feed`` per kind of stream.

A feed emits a payload on a channel; the stream under test is subscribed to it.
Broker feeds publish through a second, independent resource of the same type
(a real client of the real broker); the WebSocket and SSE feeds are real aiohttp
servers on loopback that push to their connected clients:

- :class:`WsFeedServer` keeps per-connection subscriptions (the JSON
  ``{"action": "subscribe", "channel": ...}`` messages our resource sends) and
  sends ``{"channel": c, "data": payload}`` to each subscriber;
- :class:`SseFeedServer` numbers every event (``id:``), keeps them, and replays
  what a client missed when it comes back with ``Last-Event-ID``, as an SSE
  server with a replay buffer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from tests.support.http_servers import RunningServer, start_app
from xresource.backends.streams._base import EventStreamResource


class Feed(Protocol):
    async def emit(self, channel: str, payload: Any) -> None: ...

    async def ready(self) -> None:
        """Return once the feed can emit again (after an outage that hit it too)."""


@dataclass
class BrokerFeed:
    """Publishes through ``publisher``, a connected resource of the type under test."""

    publisher: EventStreamResource

    async def emit(self, channel: str, payload: Any) -> None:
        await self.publisher.publish(channel, payload)

    async def ready(self) -> None:
        await self.publisher.wait_ready(timeout=60)


@dataclass
class WsFeedServer:
    connections: dict[web.WebSocketResponse, set[str]] = field(default_factory=dict)
    running: RunningServer | None = None

    async def start(self, port: int = 0) -> WsFeedServer:
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        self.running = await start_app(app, port=port)
        return self

    async def stop(self) -> None:
        for ws in list(self.connections):
            await ws.close()
        if self.running is not None:
            await self.running.stop()
            self.running = None

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url.replace("http", "ws", 1) + "/ws"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.connections[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(payload, dict):
                    continue
                channel = payload.get("channel")
                if payload.get("action") == "subscribe" and isinstance(channel, str):
                    self.connections[ws].add(channel)
                elif payload.get("action") == "unsubscribe":
                    self.connections[ws].discard(str(channel))
        finally:
            self.connections.pop(ws, None)
        return ws

    async def ready(self) -> None:
        pass

    def subscribers(self, channel: str) -> int:
        return sum(channel in channels for channels in self.connections.values())

    async def emit(self, channel: str, payload: Any) -> None:
        frame = json.dumps({"channel": channel, "data": payload})
        for ws, channels in list(self.connections.items()):
            if channel in channels and not ws.closed:
                with contextlib.suppress(ConnectionError):  # that client is going away
                    await ws.send_str(frame)


@dataclass
class SseFeedServer:
    log: list[tuple[int, str, str]] = field(default_factory=list)
    streams: set[asyncio.Queue[tuple[int, str, str] | None]] = field(default_factory=set)
    last_event_ids: list[str | None] = field(default_factory=list)
    running: RunningServer | None = None

    async def start(self, port: int = 0) -> SseFeedServer:
        app = web.Application()
        app.router.add_get("/events", self._handle)
        self.running = await start_app(app, port=port)
        return self

    async def stop(self) -> None:
        for queue in list(self.streams):
            queue.put_nowait(None)
        if self.running is not None:
            await self.running.stop()
            self.running = None

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url + "/events"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        self.last_event_ids.append(last)
        queue: asyncio.Queue[tuple[int, str, str] | None] = asyncio.Queue()
        # Replay and registration with no await between them, before the client sees the
        # response headers (its connect() returns then): no event falls in a gap.
        after = int(last) if last and last.isdigit() else len(self.log)
        backlog = [entry for entry in self.log if entry[0] > after]
        self.streams.add(queue)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 50\n\n")
            for entry in backlog:
                await response.write(_frame(entry))
            while (entry := await queue.get()) is not None:
                await response.write(_frame(entry))
        except ConnectionError:
            pass
        finally:
            self.streams.discard(queue)
        return response

    async def ready(self) -> None:
        pass

    async def emit(self, channel: str, payload: Any) -> None:
        entry = (len(self.log) + 1, channel, json.dumps(payload))
        self.log.append(entry)
        for queue in list(self.streams):
            queue.put_nowait(entry)


def _frame(entry: tuple[int, str, str]) -> bytes:
    number, event, data = entry
    return f"id: {number}\nevent: {event}\ndata: {data}\n\n".encode()
