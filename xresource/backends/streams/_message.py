"""What a stream hands to user code: the message, the handler type and the counters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[Any], Awaitable[None] | None]
"""A message handler: called with the decoded payload; may be sync or async."""

MESSAGE_EVENT = "message"
"""The event name every received message is dispatched under."""


@dataclass(slots=True)
class Message:
    """One received message, decoded.

    ``channel`` is where it was published (Redis channel, MQTT topic, Kafka topic,
    RabbitMQ routing key); ``subscription`` is the subscription it arrived through
    when that differs (a Redis pattern, an MQTT wildcard filter); ``meta`` holds
    protocol details (Kafka partition/offset/key/timestamp, MQTT qos/retain, ...).
    ``data`` is the decoded payload (see ``decode_payload``: JSON values, else
    text, else bytes).
    """

    channel: str
    data: Any
    event: str | None = None
    raw: bytes | str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    subscription: str | None = None


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
