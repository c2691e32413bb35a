"""``NetworkResource``: request/response services over HTTP.

TLS, credentials, URL fields and log scrubbing live in ``xresource._transport``,
shared with the stream family.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from xresource._transport.http import HttpUrl
from xresource._transport.tls import TlsFields
from xresource.resource import XResource
from xresource.secrets import HeaderMap, mask_url_password


class NetworkResource(XResource, TlsFields):
    """A remote service reached by requests."""

    family: ClassVar[str] = "network"

    endpoint: HttpUrl = Field(examples=["https://api.example.com/v1"])
    """Base URL; request paths are relative to it."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds allowed for one request, retries not included."""
    headers: HeaderMap = Field(default_factory=dict)
    """Headers sent with every request; credential headers must be references."""
    retries: int = Field(default=3, ge=0, le=100)
    """Retries on connection errors and 429/502/503/504, with backoff."""

    def target(self) -> str:
        return mask_url_password(self.endpoint)

    def _metadata_details(self) -> dict[str, Any]:
        return {"endpoint": self.target()}
