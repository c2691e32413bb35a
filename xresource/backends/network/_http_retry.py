"""When ``rest_api`` asks again, and how long it waits first (``rest_api``'s docstring has the rules)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Literal

HttpMethod = Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE"]
IDEMPOTENT_METHODS: tuple[HttpMethod, ...] = ("DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NOT_PROCESSED_STATUSES = frozenset({429, 503})  # retried whatever the method


def retryable(aiohttp: ModuleType, exc: BaseException, idempotent: bool) -> bool:
    """Whether a request that failed with the driver's ``exc`` may be sent again."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return False  # a certificate problem does not go away by asking again
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)
    if connect_timeout is not None and isinstance(exc, connect_timeout):
        return True  # the request was never sent
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, aiohttp.ClientConnectorError):
        return True  # refused or unresolvable: nothing was sent
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        return idempotent
    return False


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date), at most ``cap``; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)
