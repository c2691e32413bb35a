"""What a connected ``rest_api`` resource holds: its session, prepared URL and auth, and counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import ClientTimeout
    from multidict import MultiDictProxy
    from yarl import URL

    from xresource._transport.auth import PreparedAuth
    from xresource._transport.backoff import Backoff


@dataclass(slots=True)
class RequestCounters:
    """Request statistics of one resource (they outlive reconnects)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0


@dataclass(slots=True)
class HttpRuntime:
    """What a connected resource needs per request, in one slotted object held in
    ``XResource``'s slot ``_rt`` (pydantic private attributes cost a ``__getattr__``
    call each, which shows at thousands of requests/s)."""

    session: aiohttp.ClientSession
    aiohttp: ModuleType
    url_class: type[URL]
    base: str
    base_url: URL
    base_query: MultiDictProxy[str] | None
    auth: PreparedAuth
    timeout: ClientTimeout
    retry_set: frozenset[str]
    backoff: Backoff
    counters: RequestCounters
    signs: bool = False  # auth.signs, read once per request (a property call otherwise)
    url_cache: dict[str, Any] = field(default_factory=dict)
