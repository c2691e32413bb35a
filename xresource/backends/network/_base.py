"""``NetworkResource``: request/response services over HTTP.

Also holds what the HTTP-speaking backends share, streams included (websocket,
sse): the TLS options and how they become an ``ssl.SSLContext``, and the error
raised for an HTTP status that is also an authentication failure.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
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


class ScrubbingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger to hand a driver (websockets takes one): every line loses the owner's secrets.

    Drivers log handshakes at debug level, headers and all, so an
    ``Authorization`` value would otherwise reach the log.
    """

    def __init__(self, logger: logging.Logger, owner: XResource) -> None:
        super().__init__(logger, {})
        self._owner = owner

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        kwargs.pop("extra", None)
        self.logger.log(level, "%s", self._owner.scrub(text), **kwargs)


class _SecretsFilter(logging.Filter):
    """Scrubs registered secrets from the records of a driver logger we cannot replace (httpx)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[int, Callable[[str], str]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.sources:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True
            for scrub in list(self.sources.values()):
                message = scrub(message)
            record.msg, record.args = message, None
        return True


_FILTERS: dict[str, _SecretsFilter] = {}


def guard_logger(name: str, owner: XResource, *, active: bool = True) -> None:
    """Scrub ``owner``'s resolved secrets from records of logger ``name`` (``active=False`` stops it)."""
    guard = _FILTERS.get(name)
    if guard is None:
        guard = _FILTERS[name] = _SecretsFilter()
        logging.getLogger(name).addFilter(guard)
    if active:
        guard.sources[id(owner)] = owner.scrub
    else:
        guard.sources.pop(id(owner), None)


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
        context = ssl.create_default_context(cadata=owner.read_ca_file(cafile))
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
