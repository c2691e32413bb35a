"""Kafka names and records: the server list, topic names, reserved options, a record as a ``Message``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from xresource.backends.streams._codec import decode_payload
from xresource.backends.streams._message import Message

SERVER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Set from the resource's own fields: writing them in *_config as well would be ambiguous.
RESERVED = frozenset(
    {
        "loop",
        "bootstrap_servers",
        "group_id",
        "auto_offset_reset",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "key_serializer",
        "value_serializer",
        "key_deserializer",
        "value_deserializer",
    }
)


def check_servers(value: str | list[str]) -> None:
    servers = split_servers(value)
    if not servers:
        raise ValueError("at least one host:port is needed")
    for server in servers:
        if not SERVER_RE.fullmatch(server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536:
            raise ValueError(f"{server!r} is not host:port")


def split_servers(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item and item.strip()]


KNOWN_TOPICS: set[str] = set()
"""Topic names found valid (up to 1,024): ``produce`` checks a name once, then looks it up."""


def check_topic(label: str | Callable[[], str], topic: str) -> None:
    if not isinstance(topic, str) or not TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
        label = label if isinstance(label, str) else label()
        raise ValueError(
            f"{label}: invalid topic name {topic!r}: use 1-249 characters of letters, digits, '.', '_', '-'"
        )
    if type(topic) is str and len(KNOWN_TOPICS) < 1024:
        KNOWN_TOPICS.add(topic)


def to_message(record: Any) -> Message:
    key = record.key
    if key is not None and type(key) is bytes:
        with contextlib.suppress(UnicodeDecodeError):
            key = key.decode("utf-8")
    value = record.value
    meta = {
        "partition": record.partition,
        "offset": record.offset,
        "key": key,
        "timestamp": record.timestamp,
        "headers": record.headers,
    }
    # Positional (channel, data, event, raw, meta): keywords cost a fifth of the constructor.
    return Message(record.topic, decode_payload(value), None, value, meta)
