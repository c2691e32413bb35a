"""``mqtt``: MQTT 3.1.1 topics through aiomqtt 2.x.

aiomqtt 2.x does not reconnect: when the broker goes away its message iterator
raises and the client is dead. The supervisor in ``_base`` then builds a new
client and subscribes every topic again with its QoS; the old client is closed
first, so each subscriber receives each message once after a reconnect.

Backpressure: paho hands messages over in a synchronous socket callback, which
cannot wait. aiomqtt's inbox is therefore bounded too (``queue_size``) and, when
full, drops its oldest message (counted in ``dropped``) whatever ``overflow``
says; behind it the shared buffer applies ``overflow`` as for every stream.

Reload hand-over. With a clean session (the default) the new instance
subscribes first, then a marker on a private topic, published with the highest
QoS in use so that it queues behind every message, cuts the two streams (see
``_handover.marker_cut``). With a persistent session (``client_id`` set and
``clean_session: false``) the broker keeps the session, its subscriptions and
its unacknowledged QoS 1/2 messages, for the client id, and two connections
cannot hold one id at once (the broker would disconnect the older one, which
would reconnect and disconnect the newer, and so on). So a new instance whose
client id is still held by a live instance in this process connects with a
temporary id of its own; when it takes over, the old instance disconnects
cleanly (the session stays on the broker, which queues for it), hands over what
it had received, and the new instance reconnects with the real id and resumes
the session: nothing the broker accepted for the session at QoS 1 or 2 is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field

from xresource._optional import require
from xresource._transport.tls import tls_context
from xresource._transport.urls import url_target
from xresource.backends.streams import _handover
from xresource.backends.streams._base import ErrorClass, EventStreamResource
from xresource.backends.streams._codec import decode_payload, encode_payload
from xresource.backends.streams._message import Message, StreamCounters
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.errors import XResourceAuthenticationError, XResourceTimeoutError
from xresource.secrets import SecretText, UrlText

_DRIVER_LOG = logging.getLogger("xresource.streams.mqtt")
log = _DRIVER_LOG
_SUBSCRIBE_OPTIONS = frozenset({"qos"})

# Which live instance of this process holds each persistent session (target, client id).
_SESSIONS: weakref.WeakValueDictionary[tuple[str, str], MqttResource] = weakref.WeakValueDictionary()


class _MqttRuntime(StreamRuntime):
    __slots__ = ("client", "inbox", "staged")

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.client: Any = None  # read on every publish
        self.inbox: _Inbox | None = None
        self.staged = False  # connected with a temporary id until it takes the session over


class MqttResource(EventStreamResource):
    """MQTT: ``subscribe(topic_filter, qos=...)`` (``+``/``#`` wildcards), ``publish``."""

    install_extra: ClassVar[str | None] = "mqtt"
    example_name: ClassVar[str | None] = "sensors"
    runtime_type: ClassVar[RuntimeType] = _MqttRuntime

    type: Literal["mqtt"] = "mqtt"
    """The resource type; selects the backend."""
    connection_string: UrlText = Field(
        default="mqtt://localhost:1883", pattern=r"^mqtts?://", examples=["mqtt://localhost:1883"]
    )
    """``mqtt://host:port`` or ``mqtts://host:port`` (TLS); user-info may carry a username."""
    client_id: str | None = Field(default=None, max_length=256)
    """MQTT client identifier (default: random). Two clients with one id keep kicking each other off."""
    qos: Literal[0, 1, 2] = 0
    """Default QoS of subscriptions and publishes."""
    username: str | None = None
    """User name, if the broker wants one (or in the URL's user-info)."""
    password: SecretText | None = None
    """Password, as a ``${env:...}`` or ``${file:...}`` reference."""
    ca_file: str | None = None
    """CA bundle that signs the broker's certificate, for ``mqtts://`` (default: the system CAs)."""
    keepalive: int = Field(default=60, ge=1, le=65535)
    """Seconds between keep-alive pings; a dead broker is noticed within 1.5x this."""
    clean_session: bool = True
    """Start with a clean session; false (with a ``client_id``) keeps a persistent session on the broker."""
    timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds allowed to connect, to subscribe and for one publish."""

    if TYPE_CHECKING:
        _rt: _MqttRuntime | None

    def target(self) -> str:
        default = 8883 if self.connection_string.startswith("mqtts") else 1883
        return url_target(self.connection_string, default)

    def error_class_for(self, exc: BaseException) -> ErrorClass | None:
        text = str(exc).lower()
        if "not authorized" in text or "bad user name or password" in text:
            return XResourceAuthenticationError
        if "timed out" in text:
            return XResourceTimeoutError
        return None

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        unknown = set(options) - _SUBSCRIBE_OPTIONS
        if unknown:
            raise TypeError(
                f"{self.label}: subscribe() got unknown option(s) {', '.join(sorted(unknown))}; known: qos"
            )
        if options.get("qos", 0) not in (0, 1, 2) or isinstance(options.get("qos"), bool):
            raise ValueError(f"{self.label}: qos must be 0, 1 or 2, not {options.get('qos')!r}")
        problem = topic_filter_problem(channel)
        if problem:
            raise ValueError(f"{self.label}: invalid topic filter {channel!r}: {problem}")

    async def publish(
        self, channel: str, data: Any, *, qos: Literal[0, 1, 2] | None = None, retain: bool = False
    ) -> int | None:
        """Publish to the topic ``channel`` (no wildcards) with ``qos`` (default: the resource's)."""
        if not channel or "+" in channel or "#" in channel:
            raise ValueError(f"{self.label}: cannot publish to {channel!r}: a topic has no wildcards")
        rt = self._rt
        client = rt.client if rt is not None else None
        if client is None:
            raise self._no_connection(f"publish to {channel!r}")
        payload = encode_payload(data)
        # try/except rather than translate_errors(): this is the per-message path.
        try:
            await client.publish(
                channel, payload, qos=self.qos if qos is None else qos, retain=retain, timeout=self.timeout
            )
        except Exception as exc:
            raise self.translate(exc, f"publish to {channel!r}") from exc
        return None

    # ---- hooks ----------------------------------------------------------------------------

    @property
    def persistent_session(self) -> bool:
        return bool(self.client_id) and not self.clean_session

    def _session_key(self) -> tuple[str, str]:
        return (self.target(), self.client_id or "")

    async def _open(self) -> None:
        aiomqtt = require("aiomqtt", "mqtt", type_name=self.type)
        rt = self._rt
        assert rt is not None
        url = self.resolve(self.connection_string)
        parts = urlsplit(url)
        secure = parts.scheme == "mqtts"
        username = unquote(parts.username) if parts.username else self.username
        password: str | None = unquote(parts.password) if parts.password else None
        if password is None and self.password:
            password = self.resolve(self.password)
        identifier, clean = self.client_id, self.clean_session
        if self.persistent_session:
            holder = _SESSIONS.get(self._session_key())
            rt.staged = holder is not None and holder is not self and holder._rt is not None
            if rt.staged:
                # See the module docstring: the id is busy until its holder hands over.
                identifier, clean = f"{self.client_id}.handover-{uuid.uuid4().hex[:8]}", True
                log.info("%s: client id in use by a running instance; waiting for its hand-over", self.label)
            else:
                _SESSIONS[self._session_key()] = self
        rt.inbox = None
        client = aiomqtt.Client(
            parts.hostname or "localhost",
            parts.port or (8883 if secure else 1883),
            username=username,
            password=password,
            identifier=identifier,
            clean_session=clean,
            keepalive=self.keepalive,
            timeout=self.timeout,
            tls_context=tls_context(ca_data=self.read_ca_file(self.ca_file)) if secure else None,
            logger=_DRIVER_LOG,
            queue_type=functools.partial(_Inbox, counters=self._counters, runtime=rt),
            max_queued_incoming_messages=self.queue_size,
        )
        rt.client = client  # set first, so that _close() also ends a half-open attempt
        await asyncio.wait_for(client.__aenter__(), self.timeout)

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        client, rt.client = rt.client, None
        if client is None:
            return
        if _SESSIONS.get(self._session_key()) is self and (rt.closing or rt.released):
            del _SESSIONS[self._session_key()]
        if not _connected(client):
            # Never got its CONNACK (a silent host, a cancelled connect): there is nobody to say
            # goodbye to, and waiting for one would outlast the caller's timeout.
            _drop_socket(client, self)
            return
        try:
            await asyncio.wait_for(client.__aexit__(None, None, None), self.timeout)
        except Exception as exc:  # noqa: BLE001 - a dead connection cannot say goodbye
            self._counters.cleanup_errors += 1
            log.debug("%s: close: %s", self.label, self.scrub(repr(exc)))
            _drop_socket(client, self, connected=True)

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        rt = self._rt
        assert rt is not None
        qos = options.get("qos", self.qos)
        granted = await rt.client.subscribe(channel, qos=qos, timeout=self.timeout)
        codes = [int(getattr(code, "value", code)) for code in granted]
        if any(code >= 0x80 for code in codes):
            raise _SubscribeRefused(f"the broker refused the subscription to {channel!r}")

    async def _ping(self) -> bool:
        rt = self._rt
        client = rt.client if rt is not None else None
        if client is None:
            return False
        # A QoS 1 publish is answered by the broker (PUBACK); nobody subscribes to this topic.
        async with self.translate_errors("ping"):
            await client.publish(f"xresource/ping/{client.identifier}", b"", qos=1, timeout=self.timeout)
        return True

    async def _unsubscribe_remote(self, channel: str) -> None:
        rt = self._rt
        assert rt is not None
        await rt.client.unsubscribe(channel, timeout=self.timeout)

    async def _hand_over_from(self, previous: Self) -> None:
        rt = self._rt
        assert rt is not None
        if rt.staged and _SESSIONS.get(self._session_key()) is previous:
            # Break, then make: the session (and what the broker queues for it) carries the overlap.
            late: list[tuple[str, bytes]] = []
            old_inbox = previous._rt.inbox if previous._rt is not None else None
            if old_inbox is not None:
                old_inbox.late = late
            await previous._release()
            if late:
                rt.pipeline.gate = _SentAgain(self, late)
                rt.pipeline.refresh()
            await self._restart()
            return
        qos = max([self.qos, *(o.get("qos", self.qos) for o in self._regs.subscriptions.values())])
        topic = f"xresource/handover/{uuid.uuid4().hex}"
        client = rt.client

        async def send(channel: str, token: bytes) -> None:
            await client.publish(channel, token, qos=qos, timeout=self.timeout)

        await _handover.marker_cut(self, previous, topic, {"qos": qos}, send, self.timeout)

    async def _release(self) -> None:
        rt = self._rt
        if rt is None or not self.persistent_session:
            await super()._release()
            return
        rt.released = True
        # DISCONNECT first (the broker keeps the session and queues for it), then let the
        # receive loop hand over what paho had received and acknowledged: it ends by itself
        # on the closed client. Cancelling it instead could drop a message in aiomqtt's hands.
        await self._close_driver("leave the session")
        supervisor = rt.supervisor
        if supervisor is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await asyncio.wait([supervisor])
            except TimeoutError:
                log.warning("%s: the receive loop did not end after leaving the session", self.label)
            await self._stop_receiving(rt)
        await rt.pipeline.drain()

    async def _listen(self) -> None:
        rt = self._rt
        assert rt is not None
        client, inbox = rt.client, rt.inbox
        if client is None or inbox is None:
            raise ConnectionError("not connected")
        iterator = client.messages
        subscriptions = self._regs.subscriptions
        pipe = self._pipeline()
        while True:
            # Drain the inbox directly; only when it is empty wait through aiomqtt's
            # iterator, which also raises when the connection is lost.
            try:
                incoming = inbox.get_nowait()
            except asyncio.QueueEmpty:
                incoming = await iterator.__anext__()
            message = _to_message(incoming, subscriptions)
            if not pipe.offer(message):
                await pipe.deliver(message)


def _connected(client: Any) -> bool:
    done: asyncio.Future[None] = client._connected  # aiomqtt's CONNACK future
    return done.done() and not done.cancelled() and done.exception() is None


def _drop_socket(client: Any, stream: MqttResource, *, connected: bool = False) -> None:
    """Make paho close its socket now (and aiomqtt stop watching it).

    A client that never connected closes its socket directly (a DISCONNECT packet
    would only make aiomqtt watch a socket that is about to close); one that did
    is asked to disconnect, which drops the socket without waiting for the broker.
    """
    paho = client._client
    step = paho.disconnect if connected else getattr(paho, "_sock_close", paho.disconnect)
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - nothing more can be done; counted
        stream._counters.cleanup_errors += 1
        log.debug("%s: forced close: %s", stream.label, stream.scrub(repr(exc)))


def _to_message(incoming: Any, subscriptions: dict[str, dict[str, Any]]) -> Message:
    topic: str = incoming.topic.value
    payload = incoming.payload
    subscription = None if topic in subscriptions else _matching_filter(subscriptions, topic)
    return Message(
        channel=topic,
        data=decode_payload(payload),
        raw=payload,
        meta={"qos": incoming.qos, "retain": incoming.retain},
        subscription=subscription,
    )


class _SentAgain:
    """Drops what the broker sends again that the old instance already handed over.

    Messages paho read while the old client was saying goodbye were handed to user
    code but may not have been acknowledged, so the resumed session starts with
    them again: the first messages that match are counted as duplicates and
    dropped; the first one that does not ends the check.
    """

    def __init__(self, stream: MqttResource, late: list[tuple[str, bytes]]) -> None:
        self.stream = stream
        self.late = late

    def __call__(self, message: Message) -> bool:
        identity = (message.channel, message.raw)
        if identity in self.late:
            self.late.remove(identity)
            self.stream._counters.duplicates += 1
            return False
        rt = self.stream._rt
        if rt is not None and rt.pipeline.gate is self:
            rt.pipeline.gate = None
            rt.pipeline.refresh()
        return True


class _SubscribeRefused(Exception):
    pass


class _Inbox(asyncio.Queue[Any]):
    """aiomqtt's inbox: bounded, and dropping (and counting) the oldest message when full."""

    def __init__(self, maxsize: int = 0, *, counters: StreamCounters, runtime: _MqttRuntime) -> None:
        super().__init__(maxsize=maxsize)
        self._counters = counters
        # Set while leaving a persistent session: what arrives from then on was perhaps
        # never acknowledged, and the broker sends it again to the session's next client.
        self.late: list[tuple[str, bytes]] | None = None
        runtime.inbox = self

    def put_nowait(self, item: Any) -> None:
        late = self.late
        if late is not None:
            late.append((item.topic.value, item.payload))
        if self.full():
            try:
                self.get_nowait()
                self._counters.dropped += 1
            except asyncio.QueueEmpty:
                pass  # emptied meanwhile: there is room now
        super().put_nowait(item)


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


def _matching_filter(subscriptions: dict[str, dict[str, Any]], topic: str) -> str | None:
    for topic_filter in subscriptions:
        if topic_matches(topic_filter, topic):
            return topic_filter
    return None
