"""What a ``rest_api`` request sends and gets back: body encoding and the complete answer."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from xresource._transport.json_bytes import loads as loads_json

_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})
"""Content-Type values that are JSON as written: no parsing needed to know it."""


class HttpResponse:
    """A complete answer (the body is read and the connection is back in the pool)."""

    __slots__ = ("_driver", "_request_url", "_scrub", "body", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str],
        body: bytes,
        driver: Any,
        request_url: object,
        scrub: Callable[[str], str],
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        # The driver's response, for the parsed Content-Type (read on demand: a JSON
        # answer is recognised from the header as written, most answers never need it).
        self._driver = driver
        self._request_url = request_url
        self._scrub = scrub

    @property
    def content_type(self) -> str:
        """The media type of the body (``application/octet-stream`` when the server gave none)."""
        found: str = self._driver.content_type
        return found

    @property
    def charset(self) -> str | None:
        found: str | None = self._driver.charset
        return found

    @property
    def url(self) -> str:
        """The request URL, without secrets (masked on demand: most answers never need it)."""
        return self._scrub(str(self._request_url))

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def is_json(self) -> bool:
        if self.headers.get("Content-Type") in _JSON_TYPES:
            return True
        content_type = self.content_type
        return content_type == "application/json" or content_type.endswith("+json")

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        return loads_json(self.body)

    def data(self) -> Any:
        """Parsed JSON for a JSON answer, ``None`` for an empty body, text otherwise."""
        if not self.body:
            return None
        if self.is_json:
            return loads_json(self.body)
        return self.text()

    def __repr__(self) -> str:
        # The body and headers stay out: a careless server may echo credentials in them.
        return f"HttpResponse(status={self.status}, url={self.url!r}, body=<{len(self.body)} bytes>)"


def encode_body(json: Any, data: Any) -> tuple[bytes | None, str | None]:
    """Body bytes and their content type: we encode ourselves, so a signature covers what is sent."""
    if json is not None and data is not None:
        raise ValueError("pass json or data, not both")
    if json is not None:
        return jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"
    if data is None:
        return None, None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), None
    if isinstance(data, str):
        return data.encode(), "text/plain; charset=utf-8"
    if isinstance(data, Mapping):
        return urlencode(data, doseq=True).encode(), "application/x-www-form-urlencoded"
    raise TypeError(f"data must be bytes, str or a mapping, not {type(data).__name__}")
