"""``rabbitmq``: AMQP 0-9-1 through aio-pika's robust connection.

Model: ``publish(routing_key, data)`` publishes to ``exchange``;
``subscribe(binding_key)`` binds a queue of its own to ``exchange`` (``*``/``#``
wildcards on a topic exchange) and consumes it, so every subscriber sees every
message, as with the other stream types. ``subscribe(key, queue="jobs")``
consumes a named, durable queue instead, shared by every consumer of that name
(work queue). With ``exchange: ""`` (the default exchange) the channel *is* the
queue name.

Reconnects: aio-pika's robust connection re-opens the connection and channels
and re-declares the exchange, queues, bindings and consumers by itself, on the
same consumer tags, so a restored consumer is never doubled. It retries at a
fixed ``reconnect_interval`` (no backoff); the connection state follows its
callbacks, and when it has not succeeded within the time our backoff schedule
would take for ``max_reconnect_attempts`` attempts, the resource is ``failed``.
A private queue outlives a short outage (it expires after being unused for
``queue_expires`` seconds), so messages routed to it meanwhile are delivered
after the reconnect; a message is acknowledged once it is in the buffer.

A publish during an outage waits for the reconnect and is then sent once; it is
bounded by ``timeout`` (``XResourceTimeoutError``), so it never waits for ever
(aio-pika itself either waits on a restoring channel or fails at once,
depending on its version and timing).

Queues, consumers and acknowledgements: see ``_rabbitmq_consumers``. Reload hand-over: see
``_rabbitmq_handover`` (the new instance consumes the
same queues before the old consumers are cancelled: nothing lost or doubled).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr

from xresource._optional import require
from xresource._transport.tls import tls_context
from xresource._transport.urls import url_target
from xresource.backends.streams import _rabbitmq_consumers, _rabbitmq_handover
from xresource.backends.streams._base import ErrorClass, EventStreamResource
from xresource.backends.streams._codec import encode_payload
from xresource.backends.streams._errors import classify, rabbitmq_errors
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.backends.streams._supervisor import ReconnectGaveUp
from xresource.errors import (
    XResourceError,
    XResourceTimeoutError,
)
from xresource.resource import State
from xresource.secrets import UrlText

log = logging.getLogger("xresource.streams.rabbitmq")

_SUBSCRIBE_OPTIONS = frozenset({"queue"})
_QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")  # what AMQP (pamqp) accepts
_PREDECLARED_PREFIX = "amq."


@functools.cache
def _aio_pika() -> Any:
    """The driver module (cached: publish needs it for every message)."""
    return require("aio_pika", "rabbitmq", type_name="rabbitmq")


@functools.cache
def _invalid_channel_state() -> type[Exception]:
    """aiormq's error for a frame sent on a channel that is closing (cached: a publish path)."""
    exceptions = require("aiormq.exceptions", "rabbitmq", type_name="rabbitmq")
    found: type[Exception] = exceptions.ChannelInvalidStateError
    return found


class _RabbitRuntime(StreamRuntime):
    __slots__ = (
        "busy",
        "connection",
        "consume_channel",
        "consume_exchange",
        "consumer_tags",
        "events",
        "idle",
        "order",
        "publish_channel",
        "publish_exchange",
        "queues",
    )

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.connection: Any = None  # read on every publish
        self.publish_exchange: Any = None  # read on every publish
        self.publish_channel: Any = None
        self.consume_channel: Any = None
        self.consume_exchange: Any = None
        self.queues: dict[str, Any] = {}
        self.consumer_tags: dict[str, str] = {}
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # the robust connection's news
        self.busy = 0  # consumer callbacks under way
        self.idle: asyncio.Future[None] | None = None  # made by a hand-over waiting for busy == 0
        self.order = asyncio.Lock()  # around buffering only, never network I/O


class RabbitMQResource(EventStreamResource):
    """RabbitMQ: ``subscribe(binding_key)``, ``subscribe(key, queue=name)``, ``publish(routing_key, data)``."""

    install_extra: ClassVar[str | None] = "rabbitmq"
    example_name: ClassVar[str | None] = "jobs"
    runtime_type: ClassVar[RuntimeType] = _RabbitRuntime

    type: Literal["rabbitmq"] = "rabbitmq"
    """The resource type; selects the backend."""
    connection_string: UrlText = Field(
        default="amqp://localhost:5672/",
        pattern=r"^amqps?://",
        examples=["amqp://app:${env:RABBITMQ_PASSWORD}@localhost:5672/"],
    )
    """``amqp://user:${env:PW}@host:5672/vhost`` or ``amqps://`` (TLS)."""
    exchange: str = Field(default="amq.topic", max_length=255)
    """Exchange to publish to and bind queues to; ``""`` is the default exchange (channel = queue)."""
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    """Type used to declare ``exchange`` (``amq.*`` exchanges exist already and are not declared)."""
    prefetch_count: int = Field(default=100, ge=1, le=65535)
    """Unacknowledged messages the broker may send ahead to each subscription."""
    ca_file: str | None = None
    """CA bundle that signs the broker's certificate, for ``amqps://`` (default: the system CAs)."""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds allowed to connect and for one ``publish`` (which otherwise waits out an outage)."""
    queue_expires: float = Field(default=300.0, ge=1, le=86_400 * 30)
    """Seconds a private subscription queue survives without a consumer (to bridge outages)."""
    persistent: bool = False
    """Publish messages as persistent (written to disk by durable queues)."""

    # Names of this instance's private queues, per channel: kept across reconnects (a
    # queue outlives a short outage) and handed to the successor on a reload.
    _queue_names: dict[str, str] = PrivateAttr(default_factory=dict)
    _instance: str = PrivateAttr(default_factory=lambda: uuid.uuid4().hex[:12])

    if TYPE_CHECKING:
        _rt: _RabbitRuntime | None

    def target(self) -> str:
        default = 5671 if self.connection_string.startswith("amqps") else 5672
        return url_target(self.connection_string, default)

    def error_class_for(self, exc: BaseException) -> ErrorClass | None:
        return classify(exc, rabbitmq_errors())

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        unknown = set(options) - _SUBSCRIBE_OPTIONS
        if unknown:
            raise TypeError(
                f"{self.label}: subscribe() got unknown option(s) {', '.join(sorted(unknown))}; known: queue"
            )
        queue = options.get("queue")
        if queue is not None and (not isinstance(queue, str) or not _QUEUE_NAME_RE.match(queue)):
            raise ValueError(
                f"{self.label}: queue must be 1-255 letters, digits, '-', '_', '.' or ':', not {queue!r}"
            )
        if not self.exchange and queue is None and not _QUEUE_NAME_RE.match(channel):
            raise ValueError(
                f"{self.label}: with the default exchange the channel is a queue name; {channel!r} is not one"
            )
        if len(channel.encode("utf-8")) > 255:
            raise ValueError(f"{self.label}: a routing key is at most 255 bytes")

    def consumer_queue(self, channel: str) -> str | None:
        """The queue that ``subscribe(channel)`` consumes (for monitoring), or None."""
        options = self._regs.subscriptions.get(channel)
        if options is None:
            return None
        return self._queue_name(channel, options)

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        headers: dict[str, Any] | None = None,
        persistent: bool | None = None,
    ) -> int | None:
        """Publish to ``exchange`` with routing key ``channel`` and wait for the broker's confirm.

        During an outage the publish waits for the reconnect and is then sent
        once; if that takes longer than ``timeout`` it raises
        ``XResourceTimeoutError`` (the message was not sent).
        """
        rt = self._rt
        if rt is None or rt.connection is None:
            raise self._no_connection(f"publish to {channel!r}")
        aio_pika = _aio_pika()
        body = encode_payload(data)
        content_type = "application/json" if not isinstance(data, str | bytes | bytearray) else None
        keep = self.persistent if persistent is None else persistent
        message = aio_pika.Message(
            body,
            content_type=content_type,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT if keep else aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        # try/except rather than translate_errors(): this is the per-message path.
        # mandatory=False: a message no queue is bound for is dropped by the
        # broker, as in every other pub/sub here, rather than sent back.
        try:
            async with asyncio.timeout(self.timeout):
                exchange = rt.publish_exchange
                if exchange is not None and self._status.state is State.READY:
                    epoch = rt.epoch
                    try:
                        await exchange.publish(message, routing_key=channel, mandatory=False)
                        return None
                    except _invalid_channel_state():
                        # Closed before the frame went out: wait for our state to catch up.
                        await self._connection_news(rt, epoch)
                await self._publish_when_connected(rt, message, channel)
        except TimeoutError as exc:
            raise XResourceTimeoutError(
                f"{self.label} at {self.target()}: publish to {channel!r} failed: not confirmed within "
                f"{self.timeout}s (connection {self._status.state.value})"
            ) from exc
        except XResourceError:
            raise
        except Exception as exc:
            raise self.translate(exc, f"publish to {channel!r}") from exc
        return None

    async def _publish_when_connected(self, rt: _RabbitRuntime, message: Any, routing_key: str) -> None:
        """The slow path: wait for ``ready``, then publish; again if the channel closed first."""
        invalid_state = _invalid_channel_state()
        while True:
            if self._status.state is not State.READY:
                state = await self.wait_for_state(State.READY, State.FAILED, State.CLOSED)
                if state is not State.READY:
                    raise self._unavailable(f"publish to {routing_key!r}")
            exchange = rt.publish_exchange
            if exchange is None or self._rt is not rt:
                raise self._unavailable(f"publish to {routing_key!r}")
            epoch = rt.epoch
            try:
                await exchange.publish(message, routing_key=routing_key, mandatory=False)
                return
            except invalid_state:
                # The channel closed before the frame went out, so sending again
                # cannot duplicate it; wait until our state has caught up.
                await self._connection_news(rt, epoch)

    async def _connection_news(self, rt: _RabbitRuntime, epoch: int) -> None:
        """Wait until the connection was lost or restored since ``epoch`` (the caller's timeout bounds it)."""
        await self._status.wait_while(lambda: rt.epoch == epoch and self._rt is rt)

    # ---- hooks ----------------------------------------------------------------------------

    async def _open(self) -> None:
        aio_pika = _aio_pika()
        rt = self._rt
        assert rt is not None
        url = self.resolve(self.connection_string)
        events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        rt.events = events

        def robust(*args: Any, **kwargs: Any) -> Any:
            # Kept before it connects, so that _close() also ends a connection whose first
            # connect failed or was cancelled: left alone, it would start reconnecting by itself.
            rt.connection = aio_pika.RobustConnection(*args, **kwargs)
            return rt.connection

        connection = await asyncio.wait_for(
            aio_pika.connect_robust(
                url,
                timeout=self.timeout,
                reconnect_interval=self.reconnect_interval,
                ssl_context=tls_context(ca_data=self.read_ca_file(self.ca_file))
                if url.startswith("amqps")
                else None,
                client_properties={"connection_name": f"xresource {self.name}"},
                connection_class=robust,
            ),
            self.timeout,
        )
        rt.queues.clear()
        rt.consumer_tags.clear()

        def lost(_sender: Any, exc: BaseException | None = None) -> None:
            if connection is rt.connection and not rt.closing:
                events.put_nowait(("lost", self.scrub(str(exc) if exc else "connection closed")))

        def restored(_sender: Any) -> None:
            if connection is rt.connection:
                events.put_nowait(("restored", ""))

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(restored)
        rt.consume_channel = await connection.channel()
        await rt.consume_channel.set_qos(prefetch_count=self.prefetch_count)
        rt.publish_channel = await connection.channel(publisher_confirms=True)
        rt.consume_exchange = await self._exchange_on(rt.consume_channel)
        rt.publish_exchange = await self._exchange_on(rt.publish_channel)

    async def _exchange_on(self, channel: Any) -> Any:
        if not self.exchange:
            return channel.default_exchange
        if self.exchange.startswith(_PREDECLARED_PREFIX):
            # Reserved names cannot be declared, only checked.
            return await channel.get_exchange(self.exchange, ensure=True)
        aio_pika = _aio_pika()
        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType(self.exchange_type), durable=True
        )

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        connection, rt.connection = rt.connection, None
        rt.consume_channel = rt.publish_channel = None
        rt.consume_exchange = rt.publish_exchange = None
        if connection is None:
            return
        try:
            await asyncio.wait_for(connection.close(), self.timeout)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            self._counters.cleanup_errors += 1
            log.debug("%s: close: %s", self.label, self.scrub(repr(exc)))

    async def _disconnect(self) -> None:
        # Private queues go with the resource; the broker would expire them later anyway.
        # Cancel first: deleting a queue under a live consumer makes the broker
        # cancel it, which aio-pika answers by restoring the consumer.
        rt = self._rt
        if rt is not None and rt.consume_channel is not None and rt.connection is not None:
            for channel_name in list(rt.consumer_tags):
                try:
                    await asyncio.wait_for(self._unsubscribe_remote(channel_name), self.timeout)
                except Exception as exc:  # noqa: BLE001 - the queue expires by itself later
                    self._counters.cleanup_errors += 1
                    log.debug(
                        "%s: unsubscribe %r at close: %s", self.label, channel_name, self.scrub(repr(exc))
                    )
        await super()._disconnect()

    def _queue_name(self, channel: str, options: dict[str, Any]) -> str:
        return _rabbitmq_consumers.queue_name(self, channel, options)

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        rt = self._rt
        assert rt is not None
        await _rabbitmq_consumers.consume(self, rt, channel, options)

    async def _unsubscribe_remote(self, channel: str) -> None:
        rt = self._rt
        assert rt is not None
        await _rabbitmq_consumers.stop_consuming(self, rt, channel)

    async def _ping(self) -> bool:
        rt = self._rt
        channel = rt.consume_channel if rt is not None else None
        if channel is None:
            return False
        # Basic.Qos is a cheap request/response with no side effect: the same prefetch again.
        async with self.translate_errors("ping"), asyncio.timeout(self.timeout):
            await channel.set_qos(prefetch_count=self.prefetch_count)
        return True

    async def _listen(self) -> None:
        rt = self._rt
        assert rt is not None
        events = rt.events
        if rt.connection is None:
            raise ConnectionError("not connected")
        while True:
            kind, reason = await events.get()
            if kind != "lost":
                continue
            self._note_connection_lost(reason)
            # aio-pika retries at a fixed interval: allow it as long as our backoff would take.
            budget = self._reconnect_budget() + self.timeout if self.max_reconnect_attempts else 0.0
            try:
                async with asyncio.timeout(budget):
                    while kind != "restored":
                        kind, _ = await events.get()
            except TimeoutError:
                raise ReconnectGaveUp(
                    f"gave up: not reconnected within {budget:.1f}s "
                    f"({self.max_reconnect_attempts} attempts): {reason}"
                ) from None
            # Apply what changed while aio-pika was restoring: (un)subscribe calls made meanwhile.
            await self._restore_subscriptions()
            self._note_connection_restored()

    # ---- reload hand-over (see _rabbitmq_handover) ---------------------------------------

    async def _hand_over_from(self, previous: Self) -> None:
        await _rabbitmq_handover.hand_over(self, previous)

    async def _release(self) -> None:
        await _rabbitmq_handover.release(self)
