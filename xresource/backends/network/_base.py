"""``NetworkResource``: request/response services over HTTP.

Also holds what the HTTP-speaking backends share, streams included (websocket,
sse): the TLS options and how they become an ``ssl.SSLContext``, and the error
raised for an HTTP status that is also an authentication failure.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, WithJsonSchema

from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceRequestError,
)
from xresource.prototype import XObjPrototype
from xresource.resource import XResource
from xresource.secrets import LITERAL_URL_PASSWORD_PATTERN, HeaderMap, UrlText, mask_url_password

log = logging.getLogger("xresource.network")

HTTP_URL_PATTERN = r"^https?://"

HttpUrl = Annotated[
    UrlText,
    Field(pattern=HTTP_URL_PATTERN),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": HTTP_URL_PATTERN,
            "not": {"pattern": LITERAL_URL_PASSWORD_PATTERN},
        }
    ),
]
"""An ``http(s)://`` URL; a password in its user-info must be a reference."""


class HttpAuthenticationError(XResourceAuthenticationError, XResourceRequestError):
    """A 401 or 403 answer: an authentication error that also carries ``status``."""


def http_status_error(message: str, status: int) -> XResourceError:
    """The error for an HTTP error status: 401/403 are authentication errors, the rest request errors."""
    if status in (401, 403):
        return HttpAuthenticationError(message, status)
    return XResourceRequestError(message, status)


class TlsFields(XObjPrototype):
    """TLS options shared by the HTTP-based types (rest_api, websocket, sse)."""

    verify_ssl: bool = True
    """Verify the server's certificate and host name (turn off only for local testing)."""
    ca_file: str | None = None
    """PEM file of the CA certificates to trust instead of the system ones (relative to the manifest)."""

    def ssl_context(self, owner: XResource) -> ssl.SSLContext:
        """An SSL context for these options (``ca_file`` relative to ``owner``'s manifest folder)."""
        cafile: str | None = None
        if self.ca_file:
            path = Path(owner.resolve(self.ca_file)).expanduser()
            if not path.is_absolute() and owner.manifest_path is not None:
                path = owner.manifest_path.parent / path
            if not path.is_file():
                raise XResourceConnectionError(f"{owner.label}: ca_file {str(path)!r} does not exist")
            cafile = str(path)
        context = ssl.create_default_context(cafile=cafile)
        if not self.verify_ssl:
            log.warning("%s: TLS certificate verification is turned off (verify_ssl: false)", owner.label)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class NetworkResource(XResource, TlsFields):
    """A remote service reached by requests."""

    family: ClassVar[str] = "network"

    endpoint: HttpUrl
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
