"""HTTP pieces the HTTP-speaking types share: the URL field and the error for a status."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, WithJsonSchema

from xresource.errors import XResourceAuthenticationError, XResourceError, XResourceRequestError
from xresource.secrets import LITERAL_URL_PASSWORD_PATTERN, UrlText

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
