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
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from xresource._optional import require
from xresource.backends.network._base import HttpUrl, TlsFields, guard_logger, http_status_error
from xresource.backends.network.auth import AuthParams, PreparedAuth, prepare_auth
from xresource.backends.streams._base import ErrorClass, EventStreamResource, Message, decode_payload
from xresource.errors import (
    XResourceConnectionError,
    XResourceRequestError,
    XResourceTimeoutError,
)
from xresource.secrets import HeaderMap, mask_url_password

MIN_SERVER_RETRY = 0.05
MAX_SERVER_RETRY = 3600.0
ERROR_BODY_PREVIEW = 200


class SseResource(EventStreamResource, TlsFields):
    """A Server-Sent Events stream that resumes with ``Last-Event-ID`` after a drop."""

    install_extra: ClassVar[str | None] = "sse"

    type: Literal["sse"] = "sse"
    """The resource type; selects the backend."""
    endpoint: HttpUrl
    """``http(s)://`` URL of the event stream."""
    headers: HeaderMap = Field(default_factory=dict)
    """Extra request headers; credential headers must be references."""
    auth: AuthParams | None = None
    """Credentials (as rest_api's ``auth_params``), e.g. ``{bearer_token: ${env:TOKEN}}``."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds to connect and receive the response headers."""
    idle_timeout: float | None = Field(default=None, gt=0)
    """Reconnect when nothing, not even a keep-alive comment, arrives for this long (null: wait forever)."""

    _client: Any = PrivateAttr(default=None)
    _auth: PreparedAuth = PrivateAttr(default_factory=lambda: PreparedAuth(None))
    _stack: contextlib.AsyncExitStack | None = PrivateAttr(default=None)
    _source: Any = PrivateAttr(default=None)
    _last_event_id: str = PrivateAttr(default="")
    _server_retry: float | None = PrivateAttr(default=None)

    @property
    def last_event_id(self) -> str | None:
        """Id of the last event received (sent as ``Last-Event-ID`` on reconnect)."""
        return self._last_event_id or None

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
        client = self._client
        if client is None:
            # One client for the resource's life: reconnects reuse it (and its TLS setup).
            # The read timeout is the idle timeout: response headers are bounded by
            # asyncio.timeout below, so a quiet stream is not mistaken for a dead one.
            client = self._client = httpx.AsyncClient(
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
        self._stack, self._source = stack, source

    async def _listen(self) -> None:
        source = self._source
        if source is None:
            raise XResourceConnectionError(f"{self.label} is not connected")
        # httpx-sse carries the last id over from event to event within one
        # connection (starting empty); only a change of it is news to us.
        seen_id = ""
        async with contextlib.aclosing(source.aiter_sse()) as events:
            async for sse in events:
                if sse.retry is not None:
                    self._server_retry = min(max(sse.retry / 1000, MIN_SERVER_RETRY), MAX_SERVER_RETRY)
                if sse.data or sse.event != "message":
                    await self._deliver(
                        Message(
                            channel=sse.event,
                            data=decode_payload(sse.data),
                            event=sse.event,
                            raw=sse.data,
                            meta={"id": sse.id or None},
                        )
                    )
                if sse.id != seen_id:
                    # Recorded only once the event is queued, so a resume never skips it.
                    seen_id = self._last_event_id = sse.id

    async def _close(self) -> None:
        stack, self._stack, self._source = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _disconnect(self) -> None:
        try:
            await super()._disconnect()
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()
            guard_logger("httpx", self, active=False)

    def _backoff(self, attempt: int) -> float:
        if self._server_retry is None:
            return super()._backoff(attempt)
        if attempt == 1:
            return self._server_retry
        base: float = min(60.0, self._server_retry * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

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
