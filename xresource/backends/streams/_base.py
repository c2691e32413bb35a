"""``EventStreamResource``: one stream model and one connection state machine for
websocket, sse, redis_pubsub, kafka, rabbitmq and mqtt.

A backend implements four hooks:

- ``_open()``: connect the driver (raise on failure);
- ``_listen()``: receive until the connection is lost (raise) or closed (return),
  handing every message to ``self._deliver``;
- ``_close()``: close the driver, tolerating a half-open state;
- ``_subscribe_remote(channel, options)`` / ``_unsubscribe_remote(channel)``: tell
  the server; called for every live subscription again after a reconnect.

The supervisor task here runs ``_open`` / ``_listen`` and reconnects with
exponential backoff and jitter, up to ``max_reconnect_attempts``, then marks the
resource ``failed``. Delivery goes through a bounded queue: a slow handler makes
the receive loop wait (``overflow: block``) or drops the oldest message
(``overflow: drop_oldest``, counted), so memory stays bounded either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from xresource.errors import XResourceConnectionError
from xresource.resource import State, XResource

log = logging.getLogger("xresource.streams")

Handler = Callable[[Any], Awaitable[None] | None]


@dataclass(slots=True)
class Message:
    """One received message, decoded."""

    channel: str
    data: Any
    event: str | None = None
    raw: bytes | str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StreamCounters:
    received: int = 0
    delivered: int = 0
    dropped: int = 0
    handler_errors: int = 0
    reconnects: int = 0


def decode_payload(raw: bytes | str | None) -> Any:
    """JSON-decode when the payload is JSON, else return text (or bytes if not UTF-8)."""
    if raw is None:
        return None
    text: str
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(raw)
    else:
        text = raw
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null") or _looks_numeric(stripped):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _looks_numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))


def encode_payload(data: Any) -> bytes:
    """bytes pass through, str is UTF-8, anything else is JSON."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


class EventStreamResource(XResource):
    """A stream of events with subscriptions that survive reconnects."""

    family: ClassVar[str] = "stream"

    reconnect_interval: float = Field(default=5.0, gt=0, le=3600)
    """First backoff delay in seconds after a lost connection; doubles up to 60 s, with jitter."""
    max_reconnect_attempts: int = Field(default=10, ge=0)
    """Attempts before the resource is marked failed (0: never reconnect)."""
    queue_size: int = Field(default=1000, ge=1, le=10_000_000)
    """Messages buffered between the receive loop and handlers."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """When the buffer is full: make the receiver wait, or drop the oldest message (counted)."""

    _handlers: dict[str, list[Handler]] = PrivateAttr(default_factory=dict)
    _subscriptions: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _iterators: set[asyncio.Queue[Message]] = PrivateAttr(default_factory=set)
    _queue: asyncio.Queue[Message] | None = PrivateAttr(default=None)
    _supervisor: asyncio.Task[None] | None = PrivateAttr(default=None)
    _dispatcher: asyncio.Task[None] | None = PrivateAttr(default=None)
    _connected_event: asyncio.Event | None = PrivateAttr(default=None)
    _conn_state: State = PrivateAttr(default=State.NEW)
    _counters: StreamCounters = PrivateAttr(default_factory=StreamCounters)
    _closing: bool = PrivateAttr(default=False)

    # ---- public API -----------------------------------------------------------------------

    @property
    def connection_state(self) -> State:
        """connecting, ready, reconnecting, failed or closed."""
        return self._conn_state

    @property
    def counters(self) -> StreamCounters:
        return self._counters

    def on(self, event: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every message of ``event`` (a channel, or ``message``)."""
        self._handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Handler | None = None) -> None:
        if handler is None:
            self._handlers.pop(event, None)
        elif handler in self._handlers.get(event, []):
            self._handlers[event].remove(handler)

    async def subscribe(self, channel: str, handler: Handler | None = None, **options: Any) -> None:
        """Subscribe to ``channel``; restored after every reconnect."""
        if handler is not None:
            self.on(channel, handler)
        self._subscriptions[channel] = options
        if self._conn_state is State.READY:
            async with self.translate_errors(f"subscribe {channel!r}"):
                await self._subscribe_remote(channel, options)

    async def unsubscribe(self, channel: str) -> None:
        self._subscriptions.pop(channel, None)
        self._handlers.pop(channel, None)
        if self._conn_state is State.READY:
            async with self.translate_errors(f"unsubscribe {channel!r}"):
                await self._unsubscribe_remote(channel)

    @property
    def subscriptions(self) -> list[str]:
        return list(self._subscriptions)

    async def publish(self, channel: str, data: Any) -> None:
        """Publish ``data`` (bytes, str, or JSON-encoded) to ``channel``."""
        raise NotImplementedError(f"{self.label}: this protocol cannot publish")

    async def messages(self) -> AsyncIterator[Message]:
        """Iterate over every message received while iterating."""
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=self.queue_size)
        self._iterators.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._iterators.discard(queue)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the connection is (again) ready."""
        if self._connected_event is None:
            raise XResourceConnectionError(f"{self.label} is not connected")
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    def stream_stats(self) -> dict[str, Any]:
        c = self._counters
        return {
            "connection_state": self._conn_state.value,
            "subscriptions": len(self._subscriptions),
            "received": c.received,
            "delivered": c.delivered,
            "dropped": c.dropped,
            "handler_errors": c.handler_errors,
            "reconnects": c.reconnects,
            "queued": self._queue.qsize() if self._queue else 0,
        }

    def _metadata_details(self) -> dict[str, Any]:
        return {"stream": self.stream_stats()}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        self._closing = False
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._connected_event = asyncio.Event()
        self._conn_state = State.CONNECTING
        await self._open()  # the first connect fails loudly; the registry retries it
        await self._restore_subscriptions()
        self._set_ready()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name=f"{self.name}-dispatch")
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}-supervise")

    async def _disconnect(self) -> None:
        self._closing = True
        for task in (self._supervisor, self._dispatcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._supervisor = self._dispatcher = None
        with contextlib.suppress(Exception):
            await self._close()
        self._conn_state = State.CLOSED
        if self._connected_event is not None:
            self._connected_event.clear()

    def _set_ready(self) -> None:
        self._conn_state = State.READY
        if self._connected_event is not None:
            self._connected_event.set()

    async def _restore_subscriptions(self) -> None:
        for channel, options in list(self._subscriptions.items()):
            await self._subscribe_remote(channel, options)

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._listen()
                if self._closing:
                    return
                raise ConnectionError("the server closed the stream")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any loss leads to a reconnect
                if self._closing:
                    return
                self._last_error = self.translate(exc, "receive").args[0]
                log.warning("%s lost its connection: %s", self.label, self._last_error)
            if self._connected_event is not None:
                self._connected_event.clear()
            self._conn_state = State.RECONNECTING
            with contextlib.suppress(Exception):
                await self._close()
            while not self._closing:
                attempt += 1
                if attempt > self.max_reconnect_attempts:
                    self._conn_state = State.FAILED
                    self._state = State.FAILED
                    log.error("%s gave up after %d reconnect attempts", self.label, attempt - 1)
                    return
                await asyncio.sleep(self._backoff(attempt))
                try:
                    await self._open()
                    await self._restore_subscriptions()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    self._last_error = self.translate(exc, "reconnect").args[0]
                    with contextlib.suppress(Exception):
                        await self._close()
                    continue
                self._counters.reconnects += 1
                self._last_error = None
                self._set_ready()
                log.info("%s reconnected after %d attempt(s)", self.label, attempt)
                attempt = 0
                break

    def _backoff(self, attempt: int) -> float:
        base: float = min(60.0, self.reconnect_interval * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    # ---- delivery -------------------------------------------------------------------------

    async def _deliver(self, message: Message) -> None:
        """Hand a received message to handlers and iterators, applying the overflow policy."""
        self._counters.received += 1
        queue = self._queue
        if queue is None:
            return
        if queue.full() and self.overflow == "drop_oldest":
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
                self._counters.dropped += 1
        await queue.put(message)

    async def _dispatch_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            message = await queue.get()
            await self._dispatch(message)

    async def _dispatch(self, message: Message) -> None:
        handlers = self._handlers
        names = ["message", message.channel]
        if message.event and message.event not in names:
            names.append(message.event)
        for name in names:
            for handler in handlers.get(name, ()):
                try:
                    result = handler(message.data)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self._counters.handler_errors += 1
                    log.exception("%s: handler for %r raised", self.label, name)
        for iterator_queue in self._iterators:
            if iterator_queue.full():
                if self.overflow == "drop_oldest":
                    iterator_queue.get_nowait()
                    self._counters.dropped += 1
                else:
                    await iterator_queue.put(message)
                    continue
            iterator_queue.put_nowait(message)
        self._counters.delivered += 1

    # ---- backend hooks --------------------------------------------------------------------

    async def _open(self) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        pass

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        pass

    async def _unsubscribe_remote(self, channel: str) -> None:
        pass
