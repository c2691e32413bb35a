"""``sse``: a Server-Sent Events stream read with httpx and httpx-sse.

Events: handlers registered for ``message`` get every event; handlers for a
name (``on("tick", ...)`` or ``subscribe("tick", handler)``) get the events of
that ``event:`` name. ``data`` is JSON-decoded when it is JSON. A record with
neither data nor an event name (only ``id:`` or ``retry:``) is not dispatched.

Resume: the id of the last event received is kept; when the server ends or
drops the stream, the shared supervisor reconnects and sends it as
``Last-Event-ID`` so the server can continue where it stopped. An ``id`` sent
empty by the server clears it. The server's ``retry:`` (milliseconds, kept
between 50 ms and one hour) replaces ``reconnect_interval`` as the first
delay; further failed attempts back off from it as usual.

SSE flows one way: ``publish`` raises ``NotImplementedError``.

Reload hand-over: when the stream has ids, the replaced instance stops reading
and hands over what it received; the new one then reconnects with that
instance's last id as ``Last-Event-ID``, so a server that keeps its events
sends each one once, whatever was emitted meanwhile. Without ids the payload
splice of ``_handover`` applies (measured, not guaranteed).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr

from xresource._optional import require
from xresource._transport.auth import AuthParams, PreparedAuth, prepare_auth
from xresource._transport.http import HttpUrl, http_status_error
from xresource._transport.scrubbing import guard_logger
from xresource._transport.tls import TlsFields
from xresource.backends.streams import _handover
from xresource.backends.streams._base import ErrorClass, EventStreamResource
from xresource.backends.streams._codec import decode_payload
from xresource.backends.streams._message import Message
from xresource.backends.streams._runtime import RuntimeType, StreamRuntime
from xresource.backends.streams._supervisor import backoff
from xresource.errors import (
    XResourceConnectionError,
    XResourceRequestError,
    XResourceTimeoutError,
)
from xresource.secrets import HeaderMap, mask_url_password

if TYPE_CHECKING:
    import httpx

MIN_SERVER_RETRY = 0.05
MAX_SERVER_RETRY = 3600.0
ERROR_BODY_PREVIEW = 200


class _SseRuntime(StreamRuntime):
    __slots__ = ("client", "source", "stack")

    def __init__(self, resource: EventStreamResource) -> None:
        super().__init__(resource)
        self.client: httpx.AsyncClient | None = None  # one httpx client per connect(): reconnects reuse it
        self.stack: contextlib.AsyncExitStack | None = None
        self.source: Any = None


class SseResource(EventStreamResource, TlsFields):
    """A Server-Sent Events stream that resumes with ``Last-Event-ID`` after a drop."""

    install_extra: ClassVar[str | None] = "sse"
    example_name: ClassVar[str | None] = "notifications"
    runtime_type: ClassVar[RuntimeType] = _SseRuntime

    type: Literal["sse"] = "sse"
    """The resource type; selects the backend."""
    endpoint: HttpUrl = Field(examples=["https://stream.example.com/events"])
    """``http(s)://`` URL of the event stream."""
    headers: HeaderMap = Field(default_factory=dict)
    """Extra request headers; credential headers must be references."""
    auth: AuthParams | None = None
    """Credentials (as rest_api's ``auth_params``), e.g. ``{bearer_token: ${env:TOKEN}}``."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to connect and receive the response headers."""
    idle_timeout: float | None = Field(default=None, gt=0)
    """Reconnect when nothing, not even a keep-alive comment, arrives for this long (null: wait forever)."""

    _auth: PreparedAuth = PrivateAttr(default_factory=lambda: PreparedAuth(None))
    _last_event_id: str = PrivateAttr(default="")
    _server_retry: float | None = PrivateAttr(default=None)

    if TYPE_CHECKING:
        _rt: _SseRuntime | None

    @property
    def last_event_id(self) -> str | None:
        """Id of the last event received (sent as ``Last-Event-ID`` on reconnect)."""
        return self._last_event_id or None

    def _check_subscription(self, channel: str, options: dict[str, Any]) -> None:
        if options:
            raise TypeError(f"{self.label}: subscribe() takes no options, got {', '.join(sorted(options))}")

    async def publish(self, channel: str, data: Any) -> None:
        """Not possible: server-sent events flow from the server to the client only."""
        raise NotImplementedError(
            f"{self.label}: server-sent events flow one way, from the server; "
            "send data to the server with a rest_api resource instead"
        )

    def target(self) -> str:
        return mask_url_password(self.endpoint)

    def scrub(self, text: str) -> str:
        """Remove resolved secrets, URL passwords and the API key query value from ``text``."""
        return self._auth.mask_url(super().scrub(text))

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details["endpoint"] = self.target()
        details["last_event_id"] = self.last_event_id
        return details

    # ---- stream hooks ---------------------------------------------------------------------

    async def _open(self) -> None:
        httpx = require("httpx", "sse", type_name=self.type)
        httpx_sse = require("httpx_sse", "sse", type_name=self.type)
        auth = self._auth = prepare_auth(self.auth, self)
        url, auth_headers = auth.handshake(self.resolve(self.endpoint))
        guard_logger("httpx", self)  # httpx logs every request URL, API key query included
        headers: dict[str, str | bytes] = {key: self.resolve(value) for key, value in self.headers.items()}
        headers.update(auth_headers)
        last_id = self._last_event_id
        if last_id:
            # httpx encodes str headers as ASCII; an id is any text, so send other ids as UTF-8.
            headers["Last-Event-ID"] = last_id if last_id.isascii() else last_id.encode()
        rt = self._rt
        assert rt is not None
        client = rt.client
        if client is None:
            # One client per connection: reconnects reuse it (and its TLS setup).
            # The read timeout is the idle timeout: response headers are bounded by
            # asyncio.timeout below, so a quiet stream is not mistaken for a dead one.
            client = rt.client = httpx.AsyncClient(
                verify=self.ssl_context(self),
                timeout=httpx.Timeout(self.timeout, read=self.idle_timeout),
            )
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self.timeout):
                source = await stack.enter_async_context(
                    httpx_sse.aconnect_sse(client, "GET", url, headers=headers)
                )
                await self._check_response(source.response, url)
        except BaseException:
            await stack.aclose()
            raise
        rt.stack, rt.source = stack, source

    async def _listen(self) -> None:
        rt = self._rt
        source = rt.source if rt is not None else None
        if source is None:
            raise XResourceConnectionError(f"{self.label} is not connected")
        pipe = self._pipeline()
        # httpx-sse carries the last id over from event to event within one
        # connection (starting empty); only a change of it is news to us.
        seen_id = ""
        async with contextlib.aclosing(source.aiter_sse()) as events:
            async for sse in events:
                if sse.retry is not None:
                    self._server_retry = min(max(sse.retry / 1000, MIN_SERVER_RETRY), MAX_SERVER_RETRY)
                if sse.data or sse.event != "message":
                    message = Message(
                        channel=sse.event,
                        data=decode_payload(sse.data),
                        event=sse.event,
                        raw=sse.data,
                        meta={"id": sse.id or None},
                    )
                    if not pipe.offer(message):
                        await pipe.deliver(message)
                if sse.id != seen_id:
                    # Recorded only once the event is queued, so a resume never skips it.
                    seen_id = self._last_event_id = sse.id

    async def _close(self) -> None:
        rt = self._rt
        if rt is None:
            return
        stack, rt.stack, rt.source = rt.stack, None, None
        if stack is not None:
            await stack.aclose()
        if rt.closing:  # the end of the connection, not a reconnect: the client goes too
            client, rt.client = rt.client, None
            if client is not None:
                await client.aclose()

    async def _disconnect(self) -> None:
        try:
            await super()._disconnect()
        finally:
            guard_logger("httpx", self, active=False)

    def _backoff(self, attempt: int) -> float:
        if self._server_retry is None:
            return super()._backoff(attempt)
        if attempt == 1:
            return self._server_retry
        return backoff(self._server_retry).delay(attempt)

    async def _hand_over_from(self, previous: Self) -> None:
        if not previous._last_event_id:
            await _handover.splice(self, previous)  # no ids: nothing to resume from
            return
        # Break, then make: the server replays from the old instance's last id; what this
        # instance's first connection brings meanwhile, the old one delivers.
        rt = self._rt
        assert rt is not None
        pipe = rt.pipeline
        pipe.gate = _refuse
        pipe.refresh()
        try:
            await previous._release()
            self._last_event_id = previous._last_event_id
            await self._stop_receiving(rt)
            pipe.discard_buffered()
            await self._restart()  # the new receive loop starts after the gate is gone
        finally:
            pipe.gate = None
            pipe.refresh()

    # ---- helpers --------------------------------------------------------------------------

    async def _check_response(self, response: Any, url: str) -> None:
        status: int = response.status_code
        where = self.scrub(url)
        if status != 200:
            head = bytearray()
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= ERROR_BODY_PREVIEW * 4:
                    break  # an error page can be large; its start is enough
            body = head.decode("utf-8", errors="replace")
            preview = self.scrub(" ".join(body[:ERROR_BODY_PREVIEW].split()))
            message = f"{self.label}: GET {where} -> HTTP {status} {response.reason_phrase}".rstrip()
            raise http_status_error(f"{message}: {preview}" if preview else message, status)
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type.partition(";")[0]:
            raise XResourceRequestError(
                f"{self.label}: GET {where} answered {content_type or 'no content type'!r}, "
                "not an event stream (text/event-stream)",
                status,
            )

    def error_class_for(self, exc: BaseException) -> ErrorClass | None:
        httpx = require("httpx", "sse", type_name=self.type)
        if isinstance(exc, httpx.TimeoutException):
            return XResourceTimeoutError
        if isinstance(exc, httpx.TransportError):
            return XResourceConnectionError
        return None


def _refuse(message: Message) -> bool:
    return False
