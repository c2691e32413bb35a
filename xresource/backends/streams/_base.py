"""``EventStreamResource``: one stream model and one connection state machine for
websocket, sse, redis_pubsub, kafka, rabbitmq and mqtt.

Backend hooks
-------------
A backend implements:

- ``_open()``: connect the driver (raise on failure);
- ``_listen()``: receive until the connection is lost (raise) or closed (return),
  handing every message to ``await self._deliver(message)``;
- ``_close()``: close the driver, tolerating a half-open state;
- ``_subscribe_remote(channel, options)`` / ``_unsubscribe_remote(channel)``: tell
  the server; ``_subscribe_remote`` is called again for every live subscription
  after a reconnect, on a fresh connection, so it must not assume earlier state;
- optionally ``_ping()``: one round trip for ``validate_connection``.

Drivers that reconnect by themselves (aio-pika's robust connection) report what
they do with ``_note_connection_lost`` / ``_note_connection_restored`` from inside
``_listen``, and raise :class:`ReconnectGaveUp` when their retry budget is spent.

Connection states
-----------------
``connection_state`` walks ``connecting -> ready``; a lost connection goes to
``reconnecting`` and, after a successful reconnect with every subscription
restored, back to ``ready``. Between attempts the supervisor sleeps
``reconnect_interval * 2**(attempt-1)`` seconds (capped at 60 s) times a random
jitter factor in [0.5, 1]. After ``max_reconnect_attempts`` failed attempts the
state is ``failed`` (so is the resource's ``state``: the registry's background
recovery takes over and calls ``connect()`` again, which keeps the subscriptions).
``disconnect()`` ends in ``closed``. ``wait_for_state`` and ``state_history``
make each transition observable.

Backpressure
------------
Received messages go through one bounded buffer of ``queue_size`` messages
between the receive loop and the handlers, and each ``messages()`` iterator has
a buffer of the same size. When a buffer is full, ``overflow`` decides:

- ``block`` (the default): the receive loop waits until the handlers catch up,
  so the driver stops reading and the broker's own flow control applies (TCP
  for Redis, prefetch for RabbitMQ, fetch for Kafka). Nothing is lost, but one
  slow handler, or an iterator nobody reads, slows every subscriber down.
- ``drop_oldest``: the oldest buffered message is dropped to make room; every
  drop is counted in ``counters.dropped`` (``stream_stats()["dropped"]``, and so
  in ``/metrics``). The receive loop never waits for a handler.

Memory is bounded by the buffers either way (MQTT adds a bounded inbox of its
own, see ``mqtt``). Handlers run one message at a time, in arrival order; a
handler that raises is logged and counted (``handler_errors``) and does not stop
the other handlers. Under ``block``, while every handler is a plain function
(none is ``async def``), no ``messages()`` iterator is open and nothing is
buffered, a message is dispatched straight from the receive loop: a synchronous
handler cannot wait, so the buffer hop (a task switch per message) would buy
nothing. Order is kept in every case.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr

from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceStateError,
    XResourceTimeoutError,
)
from xresource.resource import State, XResource

log = logging.getLogger("xresource.streams")

Handler = Callable[[Any], Awaitable[None] | None]
"""A message handler: called with the decoded payload; may be sync or async."""

ErrorClass = type[XResourceError]
"""For ``error_class_for`` in backends, where ``type`` names the model field."""

MESSAGE_EVENT = "message"
"""The event name every received message is dispatched under."""

_BACKOFF_CAP = 60.0


class ReconnectGaveUp(Exception):  # a signal between hook and supervisor, never raised to users
    """Raised by ``_listen`` of a self-reconnecting driver when its retry budget is spent."""


@dataclass(slots=True)
class Message:
    """One received message, decoded.

    ``channel`` is where it was published (Redis channel, MQTT topic, Kafka topic,
    RabbitMQ routing key); ``subscription`` is the subscription it arrived through
    when that differs (a Redis pattern, an MQTT wildcard filter); ``meta`` holds
    protocol details (Kafka partition/offset/key/timestamp, MQTT qos/retain, ...).
    """

    channel: str
    data: Any
    event: str | None = None
    raw: bytes | str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    subscription: str | None = None


class MessageIterator:
    """What ``messages()`` returns: registered at creation, so nothing is missed before iterating."""

    def __init__(self, resource: EventStreamResource) -> None:
        self._resource: EventStreamResource | None = resource
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=resource.queue_size)
        resource._iterators.add(self._queue)

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> Message:
        if self._resource is None:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            self._detach()
            raise StopAsyncIteration
        return message

    async def aclose(self) -> None:
        """Stop receiving; buffered messages are discarded."""
        self._detach()

    async def __aenter__(self) -> MessageIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._resource is not None:
            self._resource._iterators.discard(self._queue)
            self._resource = None
            # Free a dispatcher that waits (under "block") for room in this queue.
            while not self._queue.empty():
                self._queue.get_nowait()

    def __del__(self) -> None:
        # An iterator dropped without aclose() must not hold up delivery under "block".
        self._detach()


@dataclass(slots=True)
class StreamCounters:
    """Monotonic counters of one resource; exported by ``stream_stats()``."""

    received: int = 0
    delivered: int = 0
    dropped: int = 0
    handler_errors: int = 0
    reconnects: int = 0


class _Pipeline:
    """The delivery path: buffer, overflow policy, handlers and iterators.

    A plain object rather than part of the pydantic model, because it runs once
    per message and private attributes of a pydantic model are slow to reach.
    """

    __slots__ = (
        "blocker",
        "counters",
        "dispatching",
        "handlers",
        "inline",
        "iterators",
        "label",
        "overflow",
        "queue",
        "running",
    )

    def __init__(
        self,
        label: str,
        counters: StreamCounters,
        handlers: dict[str, list[Handler]],
        iterators: set[asyncio.Queue[Message | None]],
    ) -> None:
        self.label = label
        self.counters = counters
        self.handlers = handlers
        self.iterators = iterators
        self.overflow = "block"
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        self.dispatching = False
        self.running = False  # a dispatcher task is there to drain the buffer
        self.inline = True  # no handler is a coroutine function
        self.blocker: asyncio.Future[None] | None = None  # awaitables an inline dispatch left
        self.refresh()

    def refresh(self) -> None:
        """Recompute, after handlers changed, whether every handler is synchronous."""
        self.inline = not any(_is_async(h) for found in self.handlers.values() for h in found)

    def reset(self, queue_size: int, overflow: str) -> None:
        self.queue = asyncio.Queue(maxsize=queue_size)
        self.overflow = overflow
        self.dispatching = False
        self.blocker = None

    def offer(self, message: Message) -> bool:
        """Dispatch ``message`` right now if the inline path applies; False if it does not.

        The inline path: ``block``, every handler a plain function (which cannot
        wait), no iterator, nothing buffered or under way. A buffer hop would buy
        nothing then, and a receive loop may call this without a coroutine.
        """
        if not (
            self.inline
            and not self.dispatching
            and not self.iterators
            and self.running
            and self.overflow == "block"
            and self.queue.empty()
        ):
            return False
        self.counters.received += 1
        pending = self.call_all(message)
        self.counters.delivered += 1
        if pending:
            # A plain function gave back an awaitable (``lambda d: q.put(d)``):
            # await it in a task, and keep later messages behind it, in order,
            # through the buffer (the dispatcher waits for this task first).
            self.inline = False
            self.dispatching = True
            self.blocker = asyncio.ensure_future(self.settle(pending))
            self.blocker.add_done_callback(self._unblock)
        return True

    def _unblock(self, done: asyncio.Future[None]) -> None:
        if self.blocker is done:
            self.blocker = None
            self.dispatching = False

    async def deliver(self, message: Message) -> None:
        if self.offer(message):
            return
        self.counters.received += 1
        queue = self.queue
        if self.overflow == "block":
            await queue.put(message)  # waits while the buffer is full
            return
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
                self.counters.dropped += 1
        queue.put_nowait(message)

    async def run(self) -> None:
        """The dispatcher task: hand buffered messages over, one at a time, in order."""
        self.running = True
        try:
            while True:
                message = await self.queue.get()
                blocker = self.blocker
                if blocker is not None:
                    await blocker  # what an inline dispatch left comes first
                self.dispatching = True
                try:
                    await self.dispatch(message)
                finally:
                    self.dispatching = False
        finally:
            self.running = False

    def call_all(self, message: Message) -> list[tuple[Awaitable[Any], Handler, str]] | None:
        """Call every handler of ``message`` now; return what plain functions gave back to await.

        For the inline path, where no handler is ``async def``: a plain function
        that returns an awaitable has it awaited after the message's other
        handlers ran (``settle``).
        """
        handlers = self.handlers
        if not handlers:
            return None
        pending: list[tuple[Awaitable[Any], Handler, str]] | None = None
        data = message.data
        for name in _handler_names(message):
            if not name:
                continue
            found = handlers.get(name)
            if not found:
                continue
            for handler in tuple(found):  # a handler may call off()/unsubscribe()
                try:
                    result = handler(data)
                except Exception:
                    self.counters.handler_errors += 1
                    log.exception("%s: handler %s for %r raised", self.label, _name_of(handler), name)
                    continue
                if result is not None and inspect.isawaitable(result):
                    if pending is None:
                        pending = []
                    pending.append((result, handler, name))
        return pending

    async def settle(self, pending: list[tuple[Awaitable[Any], Handler, str]]) -> None:
        for awaitable, handler, name in pending:
            try:
                await awaitable
            except Exception:
                self.counters.handler_errors += 1
                log.exception("%s: handler %s for %r raised", self.label, _name_of(handler), name)

    async def dispatch(self, message: Message) -> None:
        handlers = self.handlers
        if handlers:
            data = message.data
            # Handlers run inline here (no coroutine per handler list: this runs for every message).
            for name in _handler_names(message):
                if not name:
                    continue
                found = handlers.get(name)
                if not found:
                    continue
                for handler in tuple(found):  # a handler may call off()/unsubscribe()
                    try:
                        result = handler(data)
                        if result is not None and inspect.isawaitable(result):
                            await result
                    except Exception:
                        self.counters.handler_errors += 1
                        log.exception("%s: handler %s for %r raised", self.label, _name_of(handler), name)
        if self.iterators:
            for iterator_queue in tuple(self.iterators):  # an iterator may close meanwhile
                if iterator_queue.full():
                    if self.overflow == "drop_oldest":
                        with contextlib.suppress(asyncio.QueueEmpty):
                            iterator_queue.get_nowait()
                            self.counters.dropped += 1
                    else:
                        await iterator_queue.put(message)
                        continue
                iterator_queue.put_nowait(message)
        self.counters.delivered += 1


_JSON_OPENERS = frozenset(b"{[")


def _handler_names(message: Message) -> tuple[str | None, ...]:
    """Whose handlers see ``message``: "message" first, then the channel, the subscription
    and the event name, each at most once (``None`` marks a name already covered)."""
    channel, subscription, event = message.channel, message.subscription, message.event
    return (
        MESSAGE_EVENT,
        channel if channel != MESSAGE_EVENT else None,
        subscription if subscription not in (channel, MESSAGE_EVENT) else None,
        event if event not in (channel, subscription, MESSAGE_EVENT) else None,
    )


def decode_payload(raw: bytes | str | None) -> Any:
    """JSON-decode when the payload is JSON, else return text (or bytes if not UTF-8)."""
    if raw is None:
        return None
    text: str
    if type(raw) is bytes and raw and raw[0] in _JSON_OPENERS:
        # The common case, straight to the parser (it decodes UTF-8 itself).
        try:
            return json.loads(raw)
        except ValueError:
            pass  # not JSON after all (or not UTF-8): the general path decides
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(raw)
    else:
        text = raw
    stripped = text.lstrip()
    first = stripped[:1]
    if first in ("{", "[", '"') or stripped in ("true", "false", "null") or _looks_numeric(stripped):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _looks_numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))


# One encoder for every publish: json.dumps() with options builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_payload(data: Any) -> bytes:
    """bytes pass through, str is UTF-8, anything else (dict, list, numbers, None) is JSON."""
    kind = type(data)
    if kind is not dict and kind is not list:  # the usual case skips these checks
        if isinstance(data, bytes | bytearray | memoryview):
            return bytes(data)
        if isinstance(data, str):
            return data.encode("utf-8")
    try:
        return _JSON_ENCODER.encode(data).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot publish a {type(data).__name__}: not JSON-serialisable ({exc})") from None


class EventStreamResource(XResource):
    """A stream of events with subscriptions that survive reconnects."""

    family: ClassVar[str] = "stream"

    reconnect_interval: float = Field(default=5.0, gt=0, le=3600)
    """First backoff delay in seconds after a lost connection; doubles up to 60 s, with jitter."""
    max_reconnect_attempts: int = Field(default=10, ge=0)
    """Attempts before the resource is marked failed (0: never reconnect)."""
    queue_size: int = Field(default=1000, ge=1, le=10_000_000)
    """Messages buffered between the receive loop and handlers (and per ``messages()`` iterator)."""
    overflow: Literal["block", "drop_oldest"] = "block"
    """When a buffer is full: make the receiver wait, or drop the oldest message (counted)."""

    _handlers: dict[str, list[Handler]] = PrivateAttr(default_factory=dict)
    _subscriptions: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _iterators: set[asyncio.Queue[Message | None]] = PrivateAttr(default_factory=set)
    _supervisor: asyncio.Task[None] | None = PrivateAttr(default=None)
    _dispatcher: asyncio.Task[None] | None = PrivateAttr(default=None)
    _connected_event: asyncio.Event | None = PrivateAttr(default=None)
    _sub_lock: asyncio.Lock | None = PrivateAttr(default=None)
    _state_waiters: list[asyncio.Queue[State]] = PrivateAttr(default_factory=list)
    _history: collections.deque[tuple[float, State]] = PrivateAttr(
        default_factory=lambda: collections.deque(maxlen=64)
    )
    _counters: StreamCounters = PrivateAttr(default_factory=StreamCounters)
    _closing: bool = PrivateAttr(default=False)
    _connect_failed: bool = PrivateAttr(default=False)

    # Attributes read for every message or publish live in slots, not in pydantic
    # private attributes: a slot is read in ~50 ns, a private attribute in ~1-4 us
    # (measured). They are annotated for mypy only: an annotation pydantic saw
    # would turn them back into private attributes.
    __slots__ = ("_conn_state", "_pipe")
    if TYPE_CHECKING:
        _conn_state: State
        _pipe: _Pipeline | None

    def _init_slots(self) -> None:
        super()._init_slots()
        self._conn_state = State.NEW
        self._pipe = None

    def _copied_from(self, source: Self) -> None:
        # A copy starts unconnected, like a new model, with the same subscriptions.
        private = self.__pydantic_private__
        assert private is not None
        private["_handlers"] = {event: list(found) for event, found in source._handlers.items()}
        private["_subscriptions"] = {channel: dict(o) for channel, o in source._subscriptions.items()}

    if not TYPE_CHECKING:  # as in pydantic: keeps mypy from allowing any attribute

        def __getattr__(self, name: str) -> Any:
            # pydantic reaches a private attribute only after a failed lookup and a
            # hasattr() that raises and formats an AttributeError inside: ~4 us a
            # time, measured, on paths that run per message. Plain private values
            # (all of ours) are read straight from the dict instead (~0.1 us).
            private = object.__getattribute__(self, "__pydantic_private__")
            if private is not None and name in private:
                return private[name]
            return super().__getattr__(name)

    # ---- public API -----------------------------------------------------------------------

    @property
    def connection_state(self) -> State:
        """connecting, ready, reconnecting, failed or closed (``new`` before the first connect)."""
        return self._conn_state

    @property
    def state(self) -> State:
        """The resource state, showing ``reconnecting`` while the supervisor reconnects."""
        if self._state is State.READY and self._conn_state is State.RECONNECTING:
            return State.RECONNECTING
        return self._state

    @property
    def state_history(self) -> list[State]:
        """The most recent connection states, oldest first (up to 64)."""
        return [state for _, state in self._history]

    @property
    def counters(self) -> StreamCounters:
        return self._counters

    @property
    def subscriptions(self) -> list[str]:
        """Channels subscribed to (restored after every reconnect)."""
        return list(self._subscriptions)

    def on(self, event: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every message of ``event``.

        ``event`` is ``"message"`` (every message), a channel or subscription name,
        or a protocol event name (WebSocket ``type``, SSE event).
        """
        if not callable(handler):
            raise TypeError(f"{self.label}: handler for {event!r} is not callable")
        self._handlers.setdefault(event, []).append(handler)
        self._pipeline().refresh()

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Remove one handler of ``event``, or all of them."""
        if handler is None:
            self._handlers.pop(event, None)
        else:
            handlers = self._handlers.get(event)
            if handlers and handler in handlers:
                handlers.remove(handler)
                if not handlers:
                    del self._handlers[event]
        self._pipeline().refresh()

    async def subscribe(self, channel: str, handler: Handler | None = None, **options: Any) -> None:
        """Subscribe to ``channel`` (and call ``handler`` for its messages).

        The subscription is restored after every reconnect. Subscribing before
        ``connect()`` is allowed: it takes effect on connect. If the server refuses
        the subscription, nothing is kept and the error is raised.
        """
        if not isinstance(channel, str) or not channel:
            raise ValueError(f"{self.label}: channel must be a non-empty string, not {channel!r}")
        if handler is not None and not callable(handler):
            raise TypeError(f"{self.label}: handler for {channel!r} is not callable")
        self._check_subscription(channel, options)
        async with self._lock_subscriptions():
            previous = self._subscriptions.get(channel)
            self._subscriptions[channel] = options
            if handler is not None:
                # Before the server hears of it: the first message (an MQTT
                # retained one, say) may arrive before subscribing returns.
                self.on(channel, handler)
            if self._conn_state is State.READY:
                try:
                    async with self.translate_errors(f"subscribe {channel!r}"):
                        await self._subscribe_remote(channel, options)
                except BaseException:
                    if previous is None:
                        self._subscriptions.pop(channel, None)
                    else:
                        self._subscriptions[channel] = previous
                    if handler is not None:
                        self.off(channel, handler)
                    raise

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` and forget its handlers."""
        async with self._lock_subscriptions():
            known = self._subscriptions.pop(channel, None) is not None
            if self._handlers.pop(channel, None):
                self._pipeline().refresh()
            if known and self._conn_state is State.READY:
                async with self.translate_errors(f"unsubscribe {channel!r}"):
                    await self._unsubscribe_remote(channel)

    async def publish(self, channel: str, data: Any) -> int | None:
        """Publish ``data`` to ``channel``: bytes as they are, str as UTF-8, anything else as JSON.

        Returns the number of receivers where the protocol reports it (Redis), else None.
        """
        raise NotImplementedError(f"{self.label}: this protocol cannot publish")

    def messages(self) -> MessageIterator:
        """An async iterator over every message received from this call on.

        It buffers up to ``queue_size`` messages under the ``overflow`` policy;
        it ends at ``disconnect()``. Close it (``aclose()``, or leave the
        ``async for``/``async with``) when done: under ``block`` an iterator
        nobody reads holds up every handler.
        """
        return MessageIterator(self)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the connection is (again) ready.

        Raises ``XResourceConnectionError`` at once if the resource is failed or
        closed, and ``XResourceTimeoutError`` after ``timeout`` seconds.
        """
        state = await self.wait_for_state(State.READY, State.FAILED, State.CLOSED, timeout=timeout)
        if state is not State.READY:
            detail = f": {self._last_error}" if self._last_error else ""
            raise XResourceConnectionError(f"{self.label} is {state.value}{detail}")

    async def wait_for_state(self, *states: State, timeout: float | None = None) -> State:
        """Wait until the connection enters one of ``states``; return the state entered.

        A transition is seen even when the state changes again before the waiter
        runs: each waiter receives every state entered, in order.
        """
        if not states:
            raise ValueError("wait_for_state needs at least one state")
        try:
            async with asyncio.timeout(timeout):
                if self._conn_state in states:
                    return self._conn_state
                # A queue per waiter, so that no transition is missed between two wake-ups.
                seen: asyncio.Queue[State] = asyncio.Queue()
                self._state_waiters.append(seen)
                try:
                    while True:
                        entered = await seen.get()
                        if entered in states:
                            return entered
                finally:
                    self._state_waiters.remove(seen)
        except TimeoutError:
            wanted = "/".join(s.value for s in states)
            raise XResourceTimeoutError(
                f"{self.label}: still {self._conn_state.value} after {timeout}s waiting for {wanted}"
            ) from None

    def stream_stats(self) -> dict[str, Any]:
        """Numbers for status pages and ``/metrics`` (no secrets)."""
        c = self._counters
        return {
            "connection_state": self._conn_state.value,
            "subscriptions": len(self._subscriptions),
            "received": c.received,
            "delivered": c.delivered,
            "dropped": c.dropped,
            "handler_errors": c.handler_errors,
            "reconnects": c.reconnects,
            "queued": self._pipe.queue.qsize() if self._pipe else 0,
            "iterators": len(self._iterators),
            "queue_size": self.queue_size,
            "overflow": self.overflow,
        }

    def _no_connection(self, operation: str) -> XResourceError:
        """The error for an operation without a live driver: not connected yet/any more, or lost."""
        if self._state in (State.NEW, State.CLOSED):
            return XResourceStateError(f"{self.label} is not connected (state: {self._state.value})")
        return self._unavailable(operation)

    def _unavailable(self, operation: str) -> XResourceConnectionError:
        """The error for an operation attempted while there is no live connection."""
        detail = f": {self._last_error}" if self._last_error else ""
        return XResourceConnectionError(
            f"{self.label}: {operation} failed: not connected (connection {self._conn_state.value}){detail}"
        )

    def _metadata_details(self) -> dict[str, Any]:
        return {"state": self.state.value, "stream": self.stream_stats()}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        # A failed resource is connected again by the registry's recovery: stop
        # whatever the previous run left before starting over.
        await self._stop_tasks()
        self._closing = False
        self._connect_failed = False
        pipe = self._pipeline()
        pipe.reset(self.queue_size, self.overflow)
        self._connected_event = asyncio.Event()
        self._set_conn_state(State.CONNECTING)
        try:
            await self._open()  # the first connect fails loudly; the registry retries it
            async with self._lock_subscriptions():
                await self._restore_subscriptions()
                self._set_conn_state(State.READY)
        except BaseException as exc:
            self._connect_failed = True
            self._last_error = self.translate(exc, "connect").args[0]
            self._set_conn_state(State.FAILED)
            raise
        self._dispatcher = asyncio.create_task(pipe.run(), name=f"{self.name}-dispatch")
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}-supervise")

    async def _disconnect(self) -> None:
        # XResource.connect() calls _disconnect to clean up after a failed
        # _connect: that is not a close, so iterators keep waiting for recovery.
        final = not self._connect_failed
        self._connect_failed = False
        self._closing = True
        await self._stop_tasks()
        try:
            await self._close()
        except Exception as exc:  # noqa: BLE001 - closing must finish; say why it was unclean
            log.debug("%s: close: %s", self.label, self.scrub(str(exc) or type(exc).__name__))
        if self._connected_event is not None:
            self._connected_event.clear()
        if final:
            self._set_conn_state(State.CLOSED)
            self._end_iterators()

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for task in (self._supervisor, self._dispatcher):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._supervisor = self._dispatcher = None
        pipe = self._pipe
        if pipe is not None and not pipe.queue.empty():
            # Messages still buffered at close are never handled: say so in the counters.
            self._counters.dropped += pipe.queue.qsize()
            pipe.reset(self.queue_size, self.overflow)

    def _end_iterators(self) -> None:
        for queue in list(self._iterators):
            while True:
                try:
                    queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()
                    self._counters.dropped += 1

    async def _validate_connection(self) -> bool:
        if self._conn_state is State.RECONNECTING:
            # The supervisor owns recovery and status() shows "reconnecting";
            # reporting a failure here would only make the registry reconnect twice.
            return True
        if self._conn_state is not State.READY:
            return False
        return await self._ping()

    def _lock_subscriptions(self) -> asyncio.Lock:
        # Created lazily: the model may be built outside any event loop.
        if self._sub_lock is None:
            self._sub_lock = asyncio.Lock()
        return self._sub_lock

    def _set_conn_state(self, state: State) -> None:
        if state is self._conn_state:
            return
        previous, self._conn_state = self._conn_state, state
        self._history.append((time.monotonic(), state))
        if self._connected_event is not None:
            if state is State.READY:
                self._connected_event.set()
            else:
                self._connected_event.clear()
        for waiter in self._state_waiters:
            waiter.put_nowait(state)
        log.debug("%s: %s -> %s", self.label, previous.value, state.value)

    async def _restore_subscriptions(self) -> None:
        for channel, options in list(self._subscriptions.items()):
            await self._subscribe_remote(channel, options)

    # ---- supervision and reconnects -------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._closing:
            try:
                await self._listen()
                if self._closing:
                    return
                raise ConnectionError("the server closed the stream")
            except asyncio.CancelledError:
                raise
            except ReconnectGaveUp as exc:
                with contextlib.suppress(Exception):
                    await self._close()  # stop the driver's own retries
                self._give_up(str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - any loss leads to a reconnect
                if self._closing:
                    return
                self._note_connection_lost(exc)
            if not await self._reconnect():
                return

    async def _reconnect(self) -> bool:
        """Close, back off, open and restore until it works or the budget is spent."""
        attempt = 0
        while not self._closing:
            with contextlib.suppress(Exception):
                await self._close()
            attempt += 1
            if attempt > self.max_reconnect_attempts:
                self._give_up(
                    f"gave up after {attempt - 1} reconnect attempt(s); last error: "
                    + self._without_label(self._last_error or "connection lost")
                )
                return False
            await asyncio.sleep(self._backoff(attempt))
            try:
                await self._open()
                async with self._lock_subscriptions():
                    await self._restore_subscriptions()
                    self._note_connection_restored(attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next attempt may work
                self._last_error = self.translate(exc, "reconnect").args[0]
                log.info("%s: reconnect attempt %d failed: %s", self.label, attempt, self._last_error)
                continue
            return True
        return False

    def _note_connection_lost(self, exc: BaseException | str) -> None:
        """Record a lost connection and enter ``reconnecting`` (for self-healing drivers too)."""
        if isinstance(exc, XResourceError):
            self._last_error = str(exc)
        elif isinstance(exc, BaseException):
            self._last_error = self.translate(exc, "receive").args[0]
        else:
            self._last_error = f"{self.label}: {self.scrub(exc)}"
        log.warning("%s lost its connection: %s", self.label, self._last_error)
        self._set_conn_state(State.RECONNECTING)

    def _note_connection_restored(self, attempts: int | None = None) -> None:
        """Record a successful reconnect (subscriptions restored) and enter ``ready``."""
        self._counters.reconnects += 1
        self._last_error = None
        self._set_conn_state(State.READY)
        after = f" after {attempts} attempt(s)" if attempts else ""
        log.info("%s reconnected%s", self.label, after)

    def _without_label(self, text: str) -> str:
        """``"kafka resource 'k' at h:p: receive failed: x"`` -> ``"receive failed: x"``."""
        where = f" at {self.target()}" if self.target() else ""
        return text.removeprefix(f"{self.label}{where}: ").removeprefix(f"{self.label}: ")

    def _give_up(self, reason: str) -> None:
        self._last_error = f"{self.label}: {self.scrub(reason)}"
        self._set_conn_state(State.FAILED)
        self._state = State.FAILED
        log.error("%s", self._last_error)

    def _backoff(self, attempt: int) -> float:
        base: float = min(_BACKOFF_CAP, self.reconnect_interval * 2 ** min(attempt - 1, 32))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    def _reconnect_budget(self) -> float:
        """Longest time the whole backoff schedule may take (for self-healing drivers)."""
        return float(
            sum(
                min(_BACKOFF_CAP, self.reconnect_interval * 2 ** min(n, 32))
                for n in range(self.max_reconnect_attempts)
            )
        )

    # ---- delivery -------------------------------------------------------------------------

    def _pipeline(self) -> _Pipeline:
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = _Pipeline(self.label, self._counters, self._handlers, self._iterators)
        return pipe

    async def _deliver(self, message: Message) -> None:
        """Hand a received message to handlers and iterators, applying the overflow policy.

        Fast path: under ``block``, with only synchronous handlers, nothing
        buffered, no iterator open and no dispatch under way, the message is
        dispatched right here, in the receive loop, which saves a task switch
        per message; order is kept because nothing waits before it. Async
        handlers, iterators and ``drop_oldest`` go through the buffer, so a
        handler that waits never holds up the receive loop before the buffer
        is full (and under ``drop_oldest``, never).

        Backends on a hot path may bind ``self._delivery()`` once instead.
        """
        await self._pipeline().deliver(message)

    def _delivery(self) -> Callable[[Message], Awaitable[None]]:
        """``_deliver`` without the model attribute lookups, for receive loops."""
        return self._pipeline().deliver

    def _offering(self) -> Callable[[Message], bool]:
        """For receive loops: ``if not offer(m): await deliver(m)`` saves a coroutine per message.

        ``offer(m)`` dispatches ``m`` at once and returns True when the inline
        path applies (see ``_deliver``), else does nothing and returns False.
        """
        return self._pipeline().offer

    # ---- backend hooks --------------------------------------------------------------------

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        """Reject bad channel names or options before anything is stored (backends override)."""

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

    async def _ping(self) -> bool:
        return True


def _is_async(handler: Handler) -> bool:
    """A coroutine function (or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)


def _name_of(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__name__


def url_target(url: str, default_port: int) -> str:
    """``host:port`` of a connection URL, never its user-info (for ``target()``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or default_port
    except ValueError:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_context(ca_data: str | bytes | None) -> ssl.SSLContext:
    """An SSL context that verifies the server, trusting ``ca_data`` if given (else the system CAs)."""
    return ssl.create_default_context(cadata=ca_data)  # CA data, read by XResource.read_ca_file
