"""HTTP pieces the HTTP-speaking types share: the URL field and the error for a status."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, WithJsonSchema

from xresource.errors import (
    XResourceAuthenticationError,
    XResourceError,
    XResourceQueryError,
    XResourceRequestError,
)
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


RETRY_LATER_STATUSES = frozenset({408, 429})
"""4xx answers that ask the client to try again (Request Timeout, Too Many Requests)."""


def http_status_error(message: str, status: int) -> XResourceError:
    """The error for an HTTP error status, all carrying ``status``.

    401/403: an authentication error; 408, 429 and 5xx: a request error (a
    connection error: retrying may help); any other 4xx: a query error (the
    request is wrong: retrying it will not help).
    """
    if status in (401, 403):
        return HttpAuthenticationError(message, status)
    if 400 <= status < 500 and status not in RETRY_LATER_STATUSES:
        return XResourceQueryError(message, status)
    return XResourceRequestError(message, status)
