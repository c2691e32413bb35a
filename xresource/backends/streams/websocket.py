"""``websocket``: a WebSocket client on the ``websockets`` library's asyncio API.

Connection loss and reconnects are handled by the shared stream supervisor
(``_base.py``), not by the library's reconnecting iterator, so a WebSocket
behaves like every other stream type: the same states, backoff and counters.

Messages: each text or binary frame is one message. JSON is decoded; handlers
registered for ``message`` get every message, handlers for a name get the JSON
messages whose ``type`` field (``type_field``) or ``channel`` field
(``channel_field``) has that value.

Subscriptions: ``subscribe(channel)`` sends ``subscribe_message`` with
``{channel}`` filled in (extra keyword options are added to it) and sends it
again after every reconnect, once per connection. ``publish(channel, data)``
sends ``publish_message``, by default ``{"channel": channel, "data": data}``.

Reload hand-over: WebSocket has no message ids and no replay, so the payload
splice of ``_handover`` joins the two connections (the new one subscribes
first; the old one delivers until it reaches the first message the new one
holds). What a server sends to neither connection cannot be recovered.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from xresource._optional import require
from xresource._transport.auth import AuthParams, HeaderName, PreparedAuth, prepare_auth
from xresource._transport.http import http_status_error
from xresource._transport.scrubbing import ScrubbingLogger
from xresource._transport.tls import TlsFields
from xresource.backends.streams._base import EventStreamResource
from xresource.backends.streams._codec import decode_payload
from xresource.backends.streams._message import Message
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.errors import XResourceConnectionError, XResourceTimeoutError
from xresource.resource import State
from xresource.secrets import HeaderMap, OptionsMap, UrlText, has_reference, mask_url_password

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

WS_URL_PATTERN = r"^wss?://"
CHANNEL = "{channel}"
DATA = "{data}"


def _default_subscribe() -> dict[str, Any]:
    return {"action": "subscribe", "channel": CHANNEL}


def _default_unsubscribe() -> dict[str, Any]:
    return {"action": "unsubscribe", "channel": CHANNEL}


def _default_publish() -> dict[str, Any]:
    return {"channel": CHANNEL, "data": DATA}


class _WsRuntime(StreamRuntime):
    __slots__ = ("ws",)

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.ws: ClientConnection | None = None


class WebSocketResource(EventStreamResource, TlsFields):
    """A WebSocket connection with typed events, subscriptions and ``send``."""

    install_extra: ClassVar[str | None] = "websocket"
    example_name: ClassVar[str | None] = "prices"
    runtime_type: ClassVar[RuntimeType] = _WsRuntime

    type: Literal["websocket"] = "websocket"
    """The resource type; selects the backend."""
    endpoint: UrlText = Field(pattern=WS_URL_PATTERN, examples=["wss://stream.example.com/ws"])
    """``ws://`` or ``wss://`` URL of the server."""
    protocols: list[HeaderName] = Field(default_factory=list)
    """Subprotocols offered in the handshake, in order of preference."""
    headers: HeaderMap = Field(default_factory=dict)
    """Extra handshake headers; credential headers must be references."""
    auth: AuthParams | None = None
    """Handshake credentials (as rest_api's ``auth_params``); an ``api_key_query`` goes in the URL."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds for the opening handshake, and for a send to wait while the connection is re-established."""
    ping_interval: float | None = Field(default=20.0, gt=0)
    """Seconds between keep-alive pings; a missing pong within the same time counts as a lost connection."""
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    """Largest incoming message accepted; a bigger one closes the connection (code 1009)."""
    open_messages: list[OptionsMap] = Field(default_factory=list)
    """JSON messages sent after every (re)connect, before subscriptions (e.g. a login); may hold references."""
    subscribe_message: OptionsMap | None = Field(default_factory=_default_subscribe)
    """JSON sent by ``subscribe(channel)``; ``"{channel}"`` is replaced. ``null``: subscriptions are local."""
    unsubscribe_message: OptionsMap | None = Field(default_factory=_default_unsubscribe)
    """JSON sent by ``unsubscribe(channel)``; ``null`` sends nothing."""
    publish_message: OptionsMap | None = Field(default_factory=_default_publish)
    """JSON sent by ``publish(channel, data)``: ``"{channel}"`` and ``"{data}"`` are replaced."""
    type_field: str = "type"
    """Field of a JSON message whose value is dispatched as an event name (``on("price", ...)``)."""
    channel_field: str = "channel"
    """Field of a JSON message that names its channel (handlers given to ``subscribe``)."""

    _auth: PreparedAuth = PrivateAttr(default_factory=lambda: PreparedAuth(None))

    if TYPE_CHECKING:
        _rt: _WsRuntime | None

    @property
    def _ws(self) -> ClientConnection | None:
        rt = self._rt
        return rt.ws if rt is not None else None

    # ---- public API -----------------------------------------------------------------------

    async def send(self, data: Any) -> None:
        """Send one message: ``str`` as text, ``bytes`` as binary, anything else as JSON text.

        While the connection is being re-established, waits up to ``timeout``
        seconds for it, then raises ``XResourceTimeoutError`` (nothing is sent).
        """
        ws = await self._connection()
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        frame = data if isinstance(data, str | bytes) else self._json(data)
        async with self.translate_errors("send"):
            await ws.send(frame)

    async def publish(self, channel: str, data: Any) -> None:
        """Send ``publish_message`` with ``channel`` and ``data`` filled in."""
        if self.publish_message is None:
            raise NotImplementedError(f"{self.label}: publish_message is null, so publish is off; use send()")
        await self.send(self._render(self.publish_message, channel, data))

    async def list_collections_or_tables(self) -> list[str]:
        return self.subscriptions

    def target(self) -> str:
        return mask_url_password(self.endpoint)

    def scrub(self, text: str) -> str:
        """Remove resolved secrets, URL passwords and the API key query value from ``text``."""
        return self._auth.mask_url(super().scrub(text))

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details["endpoint"] = self.target()
        details["subprotocol"] = getattr(self._ws, "subprotocol", None)
        return details

    # ---- stream hooks ---------------------------------------------------------------------

    async def _open(self) -> None:
        client = require("websockets.asyncio.client", "websocket", type_name=self.type)
        exceptions = require("websockets.exceptions", "websocket", type_name=self.type)
        auth = self._auth = prepare_auth(self.auth, self)
        url, auth_headers = auth.handshake(self.resolve(self.endpoint))
        headers = {key: self.resolve(value) for key, value in self.headers.items()}
        headers.update(auth_headers)
        options: dict[str, Any] = {}
        if url.startswith("wss://"):
            options["ssl"] = self.ssl_context(self)
        rejected: int | None = None
        rt = self._rt
        assert rt is not None
        try:
            ws = rt.ws = await client.connect(
                url,
                additional_headers=headers or None,
                subprotocols=list(self.protocols) or None,
                open_timeout=self.timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                close_timeout=min(self.timeout, 5.0),
                max_size=self.max_message_bytes,
                logger=ScrubbingLogger(logging.getLogger("xresource.streams.websocket.protocol"), self),
                **options,
            )
        except exceptions.InvalidStatus as exc:
            rejected = exc.response.status_code
        if rejected is not None:  # raised out here, so the driver's exception is not chained
            where = self.scrub(url)
            raise http_status_error(
                f"{self.label}: the server at {where} refused the WebSocket handshake: HTTP {rejected}",
                rejected,
            )
        for message in self.open_messages:
            await ws.send(self._json(self._render(message, "", None)))

    async def _listen(self) -> None:
        ws = self._ws
        if ws is None:
            raise XResourceConnectionError(f"{self.label} is not connected")
        # Ends quietly on a normal close (the supervisor then reconnects) and
        # raises ConnectionClosedError on a failure.
        pipe = self._pipeline()
        async for frame in ws:
            message = self._message(frame)
            if not pipe.offer(message):
                await pipe.deliver(message)

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        ws, rt.ws = rt.ws, None
        if ws is not None:
            await ws.close()

    async def _ping(self) -> bool:
        ws = self._ws
        if ws is None:
            return False
        pong = await ws.ping()
        await asyncio.wait_for(pong, self.timeout)
        return True

    async def _subscribe_remote(self, channel: str, options: dict[str, Any]) -> None:
        if self.subscribe_message is not None:
            await self._send_now({**self._render(self.subscribe_message, channel, None), **options})

    async def _unsubscribe_remote(self, channel: str) -> None:
        if self.unsubscribe_message is not None:
            await self._send_now(self._render(self.unsubscribe_message, channel, None))

    # ---- helpers --------------------------------------------------------------------------

    def _message(self, frame: str | bytes) -> Message:
        data = decode_payload(frame)
        event = channel = None
        if isinstance(data, dict):
            event = data.get(self.type_field)
            channel = data.get(self.channel_field)
        return Message(
            channel=channel if isinstance(channel, str) else "",
            data=data,
            event=event if isinstance(event, str) else None,
            raw=frame,
            meta={"binary": isinstance(frame, bytes)},
        )

    async def _connection(self) -> ClientConnection:
        self.require_ready()
        if self._ws is None or self.connection_state is not State.READY:
            try:
                await self.wait_ready(self.timeout)
            except TimeoutError:
                raise XResourceTimeoutError(
                    f"{self.label}: the connection was not re-established within {self.timeout:g}s; "
                    "nothing was sent"
                ) from None
        ws = self._ws
        if ws is None:  # disconnected while waiting
            raise XResourceConnectionError(f"{self.label} is not connected; nothing was sent")
        return ws

    async def _send_now(self, payload: Any) -> None:
        if self._ws is None:
            raise XResourceConnectionError(f"{self.label} is not connected")
        await self._ws.send(self._json(payload))

    def _json(self, payload: Any) -> str:
        try:
            return json.dumps(payload, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{self.label}: cannot send a {type(payload).__name__}: not JSON-serialisable ({exc})"
            ) from None

    def _render(self, template: Any, channel: str, data: Any) -> Any:
        """Fill ``{channel}``/``{data}`` into a template; resolve references in its strings."""
        if isinstance(template, dict):
            return {key: self._render(value, channel, data) for key, value in template.items()}
        if isinstance(template, list):
            return [self._render(item, channel, data) for item in template]
        if isinstance(template, str):
            if template == DATA:
                return data
            if template == CHANNEL:
                return channel
            # References are resolved before the channel goes in, so a channel
            # name can never smuggle in a ${env:...} of its own.
            text = self.resolve(template) if has_reference(template) else template
            return text.replace(CHANNEL, channel)
        return template
