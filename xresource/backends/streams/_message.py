"""What a stream hands to user code: the message, the handler type and the counters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any], Awaitable[None] | None]
"""A message handler: called with the message's ``data`` (see :class:`Message`); sync or async."""

MESSAGE_EVENT = "message"
"""The event name every received message is dispatched under."""


@dataclass(slots=True)
class Message:
    """One received message, decoded: what ``messages()`` yields.

    A handler registered with ``on()`` or ``subscribe()`` receives ``data`` only.
    """

    channel: str
    """Where it was published: Redis channel, MQTT topic, Kafka topic, RabbitMQ routing key,
    the SSE event name, or the WebSocket frame's ``channel_field`` (``""`` when it has none)."""
    data: Any
    """The payload, decoded the same way for every type: a payload that is JSON becomes the
    JSON value (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``: so the
    text ``42`` is the number 42); other UTF-8 text stays ``str``; anything else stays
    ``bytes``; a message without a payload (a Kafka tombstone) is ``None``. ``raw`` keeps
    what arrived."""
    event: str | None = None
    """The protocol's event name where it has one (SSE ``event:``, WebSocket ``type_field``)."""
    raw: bytes | str | None = None
    """The payload as received, before decoding."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Protocol details: Kafka partition, offset, key, timestamp and headers; MQTT qos and retain;
    RabbitMQ queue, headers and redelivered; SSE id; WebSocket binary."""
    subscription: str | None = None
    """The subscription it arrived through when that differs from ``channel`` (a Redis
    pattern, an MQTT wildcard filter)."""


@dataclass(slots=True)
class StreamCounters:
    """Monotonic counters of one resource instance; exported by ``stream_stats()``."""

    received: int = 0
    delivered: int = 0
    dropped: int = 0
    handler_errors: int = 0
    reconnects: int = 0
    duplicates: int = 0
    """Messages received twice around a reload hand-over and handed to user code once."""
    handovers: int = 0
    cleanup_errors: int = 0
    """Failures while closing or acknowledging that could only be logged (see the debug log)."""


def handler_names(message: Message) -> tuple[str | None, ...]:
    """Whose handlers see ``message``: "message" first, then the channel, the subscription
    and the event name, each at most once (``None`` marks a name already covered)."""
    channel, subscription, event = message.channel, message.subscription, message.event
    return (
        MESSAGE_EVENT,
        channel if channel != MESSAGE_EVENT else None,
        subscription if subscription not in (channel, MESSAGE_EVENT) else None,
        event if event not in (channel, subscription, MESSAGE_EVENT) else None,
    )
