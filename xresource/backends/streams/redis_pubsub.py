"""``redis_pubsub``: Redis Pub/Sub channels and patterns through redis.asyncio.

Two clients share the URL: one for ``publish`` and health pings (its pool keeps
redis-py's own retry for a dead pooled connection), and one that owns the
subscriber connection with redis-py's retries switched off. redis-py would
otherwise reconnect and re-subscribe on its own, hidden from the connection
state; here the supervisor in ``_base`` does it, on a fresh ``PubSub``, so the
old subscriber connection is gone before the new one subscribes (no duplicate
subscriber: ``PUBSUB NUMSUB`` stays at one per channel).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar, Literal

from pydantic import Field

from xresource._optional import require
from xresource.backends.streams._base import (
    ErrorClass,
    EventStreamResource,
    Message,
    decode_payload,
    encode_payload,
    tls_context,
    url_target,
)
from xresource.errors import XResourceAuthenticationError, XResourceTimeoutError
from xresource.secrets import UrlText

_SUBSCRIBE_OPTIONS = frozenset({"pattern"})


class RedisPubSubResource(EventStreamResource):
    """Redis Pub/Sub: ``subscribe(channel)``, ``subscribe(glob, pattern=True)``, ``publish``."""

    install_extra: ClassVar[str | None] = "redis"

    type: Literal["redis_pubsub"] = "redis_pubsub"
    """The resource type; selects the backend."""
    connection_string: UrlText = Field(default="redis://localhost:6379/0", pattern=r"^rediss?://")
    """``redis://`` or ``rediss://`` (TLS) URL; a password must be a ``${env:...}`` reference."""
    ca_file: str | None = None
    """CA bundle that signs the server certificate, for ``rediss://`` (default: the system CAs)."""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds allowed to connect and for one ``publish``."""
    health_check_interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between pings while nothing is subscribed (with subscriptions a lost socket is seen at once)."""

    _client: Any = None
    _sub_client: Any = None
    _pubsub: Any = None
    _sub_changed: asyncio.Event | None = None

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
        self.require_ready()
        payload = encode_payload(data)
        client = self._client
        if client is None:
            raise self._unavailable(f"publish to {channel!r}")
        async with self.translate_errors(f"publish to {channel!r}"):
            receivers: int = await client.publish(channel, payload)
        return receivers

    async def list_collections_or_tables(self) -> list[str]:
        """Channels that have at least one subscriber right now (``PUBSUB CHANNELS``)."""
        self.require_ready()
        async with self.translate_errors("list channels"):
            names = await self._client.pubsub_channels()
        return sorted(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)

    # ---- hooks ----------------------------------------------------------------------------

    async def _open(self) -> None:
        redis = require("redis.asyncio", "redis", type_name=self.type)
        retry_mod = require("redis.retry", "redis", type_name=self.type)
        backoff_mod = require("redis.backoff", "redis", type_name=self.type)
        url = self.resolve(self.connection_string)
        options: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_keepalive": True,
        }
        if url.startswith("rediss://"):
            options["ssl_ca_certs"] = self.ca_file
            if self.ca_file:
                tls_context(self.ca_file)  # fail early, with a clear error, on a bad CA file
        self._client = redis.Redis.from_url(url, **options)
        no_retry = retry_mod.Retry(backoff_mod.NoBackoff(), 0)
        self._sub_client = redis.Redis.from_url(url, retry=no_retry, **options)
        self._sub_changed = asyncio.Event()
        await self._client.ping()
        self._pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        clients = (self._sub_client, self._client)
        self._sub_client = self._client = None
        # The connection may already be dead: closing is best effort.
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        if options.get("pattern"):
            await self._pubsub.psubscribe(channel)
        else:
            await self._pubsub.subscribe(channel)
        if self._sub_changed is not None:
            self._sub_changed.set()

    async def _unsubscribe_remote(self, channel: str) -> None:
        # The options are gone by now; a channel name is either a pattern or not,
        # and unsubscribing what was not subscribed is harmless in Redis.
        if channel in self._pubsub.patterns:
            await self._pubsub.punsubscribe(channel)
        else:
            await self._pubsub.unsubscribe(channel)

    async def _ping(self) -> bool:
        async with self.translate_errors("ping"):
            return bool(await self._client.ping())

    async def _listen(self) -> None:
        pubsub = self._pubsub
        changed = self._sub_changed
        assert pubsub is not None
        assert changed is not None
        deliver = self._deliver
        while True:
            if not pubsub.subscribed:
                # Nothing to read, so nothing would notice an outage: ping now and then.
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), self.health_check_interval)
                except TimeoutError:
                    await self._client.ping()
                continue
            raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if raw is None:
                continue
            kind = raw["type"]
            if kind not in ("message", "pmessage"):
                continue
            data = raw["data"]
            pattern = raw.get("pattern")
            await deliver(
                Message(
                    channel=_text(raw["channel"]),
                    data=decode_payload(data),
                    raw=data,
                    subscription=_text(pattern) if pattern is not None else None,
                )
            )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
