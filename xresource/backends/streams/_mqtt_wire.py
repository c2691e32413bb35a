"""MQTT on the wire: topic filters, MQTT 5 properties, and a received message as a ``Message``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xresource._optional import require
from xresource.backends.streams._codec import decode_payload
from xresource.backends.streams._message import Message

CLEAN_START_FIRST_ONLY = 3  # paho's default clean_start (MQTT_CLEAN_START_FIRST_ONLY), ignored before MQTT 5


def to_message(incoming: Any, subscriptions: dict[str, dict[str, Any]]) -> Message:
    topic: str = incoming.topic.value
    payload = incoming.payload
    subscription = None if topic in subscriptions else matching_filter(subscriptions, topic)
    meta = {"qos": incoming.qos, "retain": incoming.retain}
    properties = incoming.properties  # MQTT 5 only
    if properties is not None:
        pairs = getattr(properties, "UserProperty", None)
        if pairs:
            meta["headers"] = list(pairs)
    # Positional (channel, data, event, raw, meta, subscription): keywords cost more.
    return Message(topic, decode_payload(payload), None, payload, meta, subscription)


def session_forever() -> Any:
    """CONNECT properties that keep an MQTT 5 session while the client is away (as 3.1.1 does)."""
    properties = require("paho.mqtt.properties", "mqtt", type_name="mqtt")
    packet_types = require("paho.mqtt.packettypes", "mqtt", type_name="mqtt")
    found = properties.Properties(packet_types.PacketTypes.CONNECT)
    found.SessionExpiryInterval = 0xFFFFFFFF
    return found


def user_properties(pairs: Sequence[tuple[str, str]]) -> Any:
    """PUBLISH properties carrying ``pairs`` as MQTT 5 user properties."""
    properties = require("paho.mqtt.properties", "mqtt", type_name="mqtt")
    packet_types = require("paho.mqtt.packettypes", "mqtt", type_name="mqtt")
    found = properties.Properties(packet_types.PacketTypes.PUBLISH)
    found.UserProperty = [(str(name), str(value)) for name, value in pairs]
    return found


def topic_filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT subscription, or None."""
    if not topic_filter:
        return "it is empty"
    if len(topic_filter.encode("utf-8")) > 65535:
        return "it is longer than 65535 bytes"
    if "\x00" in topic_filter:
        return "it contains a NUL character"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching: ``+`` is one level, ``#`` the rest; wildcards skip ``$`` topics."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def matching_filter(subscriptions: dict[str, dict[str, Any]], topic: str) -> str | None:
    for topic_filter in subscriptions:
        if topic_matches(topic_filter, topic):
            return topic_filter
    return None
