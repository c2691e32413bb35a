"""``redis_pubsub``: Redis Pub/Sub channels and patterns through redis.asyncio.

Two clients share the URL: one for ``publish`` and health pings (its pool keeps
redis-py's own retry for a dead pooled connection), and one that owns the
subscriber connection with redis-py's retries switched off. redis-py would
otherwise reconnect and re-subscribe on its own, hidden from the connection
state; here the supervisor in ``_base`` does it, on a fresh ``PubSub``, so the
old subscriber connection is gone before the new one subscribes (no duplicate
subscriber: ``PUBSUB NUMSUB`` stays at one per channel).

Reload hand-over: the new instance subscribes first, then both subscribe to a
private marker channel and one marker is published; Redis writes it into both
subscriber connections at the same place in the stream, so the old instance
delivers exactly what came before it and the new one what came after (see
``_handover.marker_cut``). Pub/Sub keeps nothing for a subscriber that is not
connected, so that overlap is the whole guarantee.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field

from xresource._optional import require
from xresource._transport.urls import url_target
from xresource.backends.streams import _handover
from xresource.backends.streams._base import ErrorClass, EventStreamResource
from xresource.backends.streams._codec import decode_payload, encode_payload
from xresource.backends.streams._message import Message
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.errors import XResourceAuthenticationError, XResourceTimeoutError
from xresource.secrets import UrlText

log = logging.getLogger("xresource.streams.redis")

_SUBSCRIBE_OPTIONS = frozenset({"pattern"})


class _RedisRuntime(StreamRuntime):
    __slots__ = ("client", "patterns", "pubsub", "sub_changed", "sub_client")

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.client: Any = None  # publish and pings (read on every publish)
        self.sub_client: Any = None  # owns the subscriber connection, no driver retries
        self.pubsub: Any = None
        self.sub_changed = asyncio.Event()
        self.patterns: set[str] = set()


class RedisPubSubResource(EventStreamResource):
    """Redis Pub/Sub: ``subscribe(channel)``, ``subscribe(glob, pattern=True)``, ``publish``."""

    install_extra: ClassVar[str | None] = "redis"
    example_name: ClassVar[str | None] = "cache_events"
    runtime_type: ClassVar[RuntimeType] = _RedisRuntime

    type: Literal["redis_pubsub"] = "redis_pubsub"
    """The resource type; selects the backend."""
    connection_string: UrlText = Field(
        default="redis://localhost:6379/0", pattern=r"^rediss?://", examples=["redis://localhost:6379/0"]
    )
    """``redis://`` or ``rediss://`` (TLS) URL; a password must be a ``${env:...}`` reference."""
    ca_file: str | None = None
    """CA bundle that signs the server certificate, for ``rediss://`` (default: the system CAs)."""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds allowed to connect and for a health ping."""
    keepalive_idle: int = Field(default=15, ge=1, le=7200)
    """Seconds of silence before TCP keepalive probes a connection (a dead peer is found ~15 s later)."""
    health_check_interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between pings while nothing is subscribed (with subscriptions a lost socket is seen at once)."""

    if TYPE_CHECKING:
        _rt: _RedisRuntime | None

    def target(self) -> str:
        return url_target(self.connection_string, 6379)

    def error_class_for(self, exc: BaseException) -> ErrorClass | None:
        name = type(exc).__name__
        if name == "AuthenticationError" or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return XResourceAuthenticationError
        if name == "TimeoutError":
            return XResourceTimeoutError
        return None

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        unknown = set(options) - _SUBSCRIBE_OPTIONS
        if unknown:
            raise TypeError(
                f"{self.label}: subscribe() got unknown option(s) {', '.join(sorted(unknown))}; "
                "known: pattern"
            )
        if not isinstance(options.get("pattern", False), bool):
            raise TypeError(f"{self.label}: subscribe(pattern=...) must be True or False")

    async def publish(self, channel: str, data: Any) -> int | None:
        """Publish to ``channel``; returns how many subscribers received it."""
        rt = self._rt
        client = rt.client if rt is not None else None
        if client is None:
            raise self._no_connection(f"publish to {channel!r}")
        payload = encode_payload(data)
        # try/except rather than translate_errors(): this is the per-message path.
        try:
            receivers: int = await client.publish(channel, payload)
        except Exception as exc:
            raise self.translate(exc, f"publish to {channel!r}") from exc
        return receivers

    async def list_collections_or_tables(self) -> list[str]:
        """Channels that have at least one subscriber right now (``PUBSUB CHANNELS``)."""
        self.require_ready()
        rt = self._rt
        assert rt is not None
        async with self.translate_errors("list channels"):
            names = await rt.client.pubsub_channels()
        return sorted(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)

    # ---- hooks ----------------------------------------------------------------------------

    async def _open(self) -> None:
        redis = require("redis.asyncio", "redis", type_name=self.type)
        retry_mod = require("redis.retry", "redis", type_name=self.type)
        backoff_mod = require("redis.backoff", "redis", type_name=self.type)
        url = self.resolve(self.connection_string)
        # No socket_timeout: redis-py would wrap every socket write in
        # asyncio.wait_for (a task per command on Python 3.11), and a timeout
        # per publish costs a timer each, which showed in profiles. A server
        # that went away fails a publish at once; a silent one is found by TCP
        # keepalive within about keepalive_idle + 3 * 5 seconds.
        options: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_keepalive": True,
            "socket_keepalive_options": _keepalive_options(self.keepalive_idle),
        }
        if url.startswith("rediss://"):
            options["ssl_ca_data"] = self.read_ca_file(self.ca_file)  # checked against the allowed roots
        rt = self._rt
        assert rt is not None
        rt.client = redis.Redis.from_url(url, **options)
        no_retry = retry_mod.Retry(backoff_mod.NoBackoff(), 0)
        rt.sub_client = redis.Redis.from_url(url, retry=no_retry, **options)
        async with asyncio.timeout(self.timeout):  # a server that accepts but never answers
            await rt.client.ping()
        rt.pubsub = rt.sub_client.pubsub(ignore_subscribe_messages=True)
        rt.patterns = set()

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        pubsub, rt.pubsub = rt.pubsub, None
        clients = (rt.sub_client, rt.client)
        rt.sub_client = rt.client = None
        # The connection may already be dead: closing is best effort, but counted.
        for closable in (pubsub, *clients):
            if closable is not None:
                try:
                    await closable.aclose()
                except Exception as exc:  # noqa: BLE001 - a dead connection cannot close cleanly
                    self._counters.cleanup_errors += 1
                    log.debug("%s: close: %s", self.label, self.scrub(repr(exc)))

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        rt = self._rt
        assert rt is not None
        if options.get("pattern"):
            await rt.pubsub.psubscribe(channel)
            rt.patterns.add(channel)
        else:
            await rt.pubsub.subscribe(channel)
        rt.sub_changed.set()

    async def _unsubscribe_remote(self, channel: str) -> None:
        rt = self._rt
        assert rt is not None
        if channel in rt.patterns:
            rt.patterns.discard(channel)
            await rt.pubsub.punsubscribe(channel)
        else:
            await rt.pubsub.unsubscribe(channel)

    async def _ping(self) -> bool:
        rt = self._rt
        if rt is None or rt.client is None:
            return False
        async with self.translate_errors("ping"), asyncio.timeout(self.timeout):
            return bool(await rt.client.ping())

    async def _hand_over_from(self, previous: Self) -> None:
        rt = self._rt
        assert rt is not None
        channel = f"xresource.handover.{uuid.uuid4().hex}"
        await _handover.marker_cut(self, previous, channel, {}, rt.client.publish, self.timeout)

    async def _listen(self) -> None:
        rt = self._rt
        assert rt is not None
        pubsub = rt.pubsub
        changed = rt.sub_changed
        if pubsub is None:
            raise ConnectionError("not connected")
        pipe = self._pipeline()
        while True:
            if not pubsub.subscribed:
                # Nothing to read, so nothing would notice an outage: ping now and then.
                changed.clear()
                try:
                    async with asyncio.timeout(self.health_check_interval):  # no task per wait
                        await changed.wait()
                except TimeoutError:
                    async with asyncio.timeout(self.timeout):
                        await rt.client.ping()
                continue
            raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if raw is None:
                continue
            kind = raw["type"]
            if kind not in ("message", "pmessage"):
                continue
            data = raw["data"]
            pattern = raw.get("pattern")
            message = Message(
                channel=_text(raw["channel"]),
                data=decode_payload(data),
                raw=data,
                subscription=_text(pattern) if pattern is not None else None,
            )
            if not pipe.offer(message):
                await pipe.deliver(message)


def _keepalive_options(idle: int) -> dict[int, int]:
    options: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        constant = getattr(socket, name, None)  # not on every platform
        if constant is not None:
            options[constant] = value
    return options


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
