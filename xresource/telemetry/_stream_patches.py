"""Spans for stream publishes and handled messages, by swapping methods in (as ``_patches`` does).

``instrument()`` wraps each built-in stream's publish method in
:func:`~xresource.telemetry.streams.publishing` (the trace context goes into
the message headers where the broker has them: Kafka record headers, RabbitMQ
headers, MQTT 5 user properties) and the delivery pipeline's two hand-over
methods (``Pipeline.offer``, the inline path, and ``Pipeline.dispatch``, the
buffered one) in :func:`~xresource.telemetry.streams.consuming`, so the
handlers of a message run inside a CONSUMER span that continues the
producer's trace. ``Pipeline._failed`` (called inside the ``except`` of a
handler that raised) marks that span failed.

Until then, and again after ``uninstrument()``, the classes hold their own
functions: a message with tracing off runs exactly the code it runs without
this module, not one test more.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from xresource.resource import XResource
from xresource.telemetry._state import STATE, failed
from xresource.telemetry.streams import consuming, publishing

if TYPE_CHECKING:
    from xresource.backends.streams._message import Message
    from xresource.backends.streams._pipeline import Pipeline

Wrap = Callable[[type, str, Callable[[Any], Any]], None]


def patch_streams(wrap: Wrap, builtin_class: Callable[[str], type]) -> None:
    """Wrap the stream classes' publish methods and the pipeline's hand-over (models only: no driver)."""
    from xresource.backends.streams._pipeline import Pipeline

    wrap(Pipeline, "offer", _offer)
    wrap(Pipeline, "dispatch", _dispatch)
    wrap(Pipeline, "_failed", _failed)
    wrap(builtin_class("kafka"), "produce", _produce)  # publish() produces
    wrap(builtin_class("rabbitmq"), "publish", _publish_rabbitmq)
    wrap(builtin_class("mqtt"), "publish", _publish_mqtt)
    wrap(builtin_class("redis_pubsub"), "publish", _publish_plain)
    wrap(builtin_class("websocket"), "publish", _publish_plain)


# ---- publishing -------------------------------------------------------------------------------------


def _produce(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def produce(
        self: Any,
        topic: str,
        value: Any,
        key: str | bytes | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        with publishing(self, topic, headers, carrier="byte_pairs") as sent:
            return await original(self, topic, value, key, partition=partition, headers=sent)

    return produce


def _publish_rabbitmq(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def publish(
        self: Any,
        channel: str,
        data: Any,
        *,
        headers: dict[str, Any] | None = None,
        persistent: bool | None = None,
    ) -> Any:
        with publishing(self, channel, headers, carrier="mapping") as sent:
            return await original(self, channel, data, headers=sent, persistent=persistent)

    return publish


def _publish_mqtt(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def publish(
        self: Any,
        channel: str,
        data: Any,
        *,
        qos: int | None = None,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        if self.protocol != "5":  # MQTT 3.1.1 has no headers: a span without propagation
            with publishing(self, channel, None):
                return await original(
                    self, channel, data, qos=qos, retain=retain, user_properties=user_properties
                )
        with publishing(self, channel, user_properties, carrier="pairs") as sent:
            return await original(self, channel, data, qos=qos, retain=retain, user_properties=sent)

    return publish


def _publish_plain(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Brokers without message headers (Redis Pub/Sub, WebSocket): a span, no propagation."""

    @functools.wraps(original)
    async def publish(self: Any, channel: str, data: Any) -> Any:
        with publishing(self, channel, None):
            return await original(self, channel, data)

    return publish


# ---- consuming --------------------------------------------------------------------------------------


def _offer(original: Callable[[Pipeline, Message], bool]) -> Callable[[Pipeline, Message], bool]:
    @functools.wraps(original)
    def offer(self: Pipeline, message: Message) -> bool:
        # The inline path's own test first: a message it declines gets its span in dispatch().
        if not (self.open and self.regs.fast and not self.dispatching and self.queue.empty()):
            return False
        owner = self.owner()
        if not isinstance(owner, XResource) or STATE.tracer is None:
            return original(self, message)
        with consuming(owner, message.channel, message.meta.get("headers")):
            return original(self, message)

    return offer


def _dispatch(
    original: Callable[[Pipeline, Message], Awaitable[None]],
) -> Callable[[Pipeline, Message], Awaitable[None]]:
    @functools.wraps(original)
    async def dispatch(self: Pipeline, message: Message) -> None:
        owner = self.owner()
        if not isinstance(owner, XResource) or STATE.tracer is None:
            await original(self, message)
            return
        with consuming(owner, message.channel, message.meta.get("headers")):
            await original(self, message)

    return dispatch


def _failed(original: Callable[..., None]) -> Callable[..., None]:
    from opentelemetry import trace

    @functools.wraps(original)
    def handler_failed(self: Pipeline, handler: Any, name: str) -> None:
        error = sys.exc_info()[1]  # called inside the except around the handler
        if error is not None:
            span = trace.get_current_span()
            if span.is_recording():  # the message's span (not yet ended)
                failed(span, error)
        original(self, handler, name)

    return handler_failed
