"""``rest_api``: an HTTP API reached through one pooled aiohttp session.

The session is created at connect and its ``TCPConnector`` is the connection
pool (``max_connections``, ``max_connections_per_host``). Every request goes
to a path relative to ``endpoint`` and gets the resource's headers, auth,
timeout and retries.

Retries (``retries`` of them, so ``retries + 1`` attempts at most):

- a connection that could not be opened (refused, DNS, connect timeout) and
  the answers 429 and 503 are retried for every method: the server did not
  process the request;
- a connection lost mid-request and the answers 502 and 504 are retried only
  for ``retry_methods`` (the idempotent ones by default), since the server
  may have acted on it;
- the delay is ``backoff_factor * 2 ** (attempt - 1)`` seconds (at most
  ``max_backoff``) with jitter, or the server's ``Retry-After`` (seconds or an
  HTTP date) capped at ``max_retry_after``;
- a read timeout is not retried (the server may still be at work, and retrying
  would multiply the wait): it raises ``XResourceTimeoutError`` at once.

Errors: 401/403 raise ``XResourceAuthenticationError`` (also an
``XResourceRequestError``), other answers >= 400 ``XResourceRequestError``
with ``.status``, timeouts ``XResourceTimeoutError``, unreachable servers
``XResourceConnectionError``. Messages never hold a resolved secret, and the
API key query parameter shows as ``***``.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlencode

from pydantic import Field, PrivateAttr, model_validator

from xresource._optional import require
from xresource._transport.auth import AuthParams, PreparedAuth, basic_header, prepare_auth
from xresource._transport.backoff import Backoff
from xresource._transport.http import http_status_error
from xresource.backends.network._base import NetworkResource
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceRequestError,
    XResourceTimeoutError,
)
from xresource.secrets import mask_url_password

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

log = logging.getLogger("xresource.network.rest_api")

HttpMethod = Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE"]
IDEMPOTENT_METHODS: tuple[HttpMethod, ...] = ("DELETE", "GET", "HEAD", "OPTIONS", "PUT", "TRACE")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NOT_PROCESSED_STATUSES = frozenset({429, 503})  # retried whatever the method
ERROR_BODY_PREVIEW = 200  # characters of an error answer quoted in the exception


class HttpResponse:
    """A complete answer (the body is read and the connection is back in the pool)."""

    __slots__ = ("_request_url", "_scrub", "body", "charset", "content_type", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str],
        body: bytes,
        content_type: str,
        charset: str | None,
        request_url: object,
        scrub: Callable[[str], str],
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.content_type = content_type
        self.charset = charset
        self._request_url = request_url
        self._scrub = scrub

    @property
    def url(self) -> str:
        """The request URL, without secrets (masked on demand: most answers never need it)."""
        return self._scrub(str(self._request_url))

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def is_json(self) -> bool:
        return self.content_type == "application/json" or self.content_type.endswith("+json")

    def text(self) -> str:
        return self.body.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def data(self) -> Any:
        """Parsed JSON for a JSON answer, ``None`` for an empty body, text otherwise."""
        if not self.body:
            return None
        if self.is_json:
            return self.json()
        return self.text()

    def __repr__(self) -> str:
        # The body and headers stay out: a careless server may echo credentials in them.
        return f"HttpResponse(status={self.status}, url={self.url!r}, body=<{len(self.body)} bytes>)"


@dataclass(slots=True)
class RequestCounters:
    requests: int = 0
    retries: int = 0
    failures: int = 0


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


@dataclass(slots=True)
class HttpRuntime:
    """What a connected resource needs per request, in one slotted object held in
    ``XResource``'s slot ``_rt`` (pydantic private attributes cost a ``__getattr__``
    call each, which shows at thousands of requests/s)."""

    session: aiohttp.ClientSession
    aiohttp: Any
    url_class: Any
    base: str
    base_url: Any
    base_query: Any
    auth: PreparedAuth
    timeout: Any
    retry_set: frozenset[str]
    backoff: Backoff
    counters: RequestCounters
    url_cache: dict[str, Any] = field(default_factory=dict)


class RestApiResource(NetworkResource):
    """An HTTP/JSON API: ``get``/``post``/``put``/``patch``/``delete``/``request``."""

    install_extra: ClassVar[str | None] = "rest"

    type: Literal["rest_api"] = "rest_api"
    """The resource type; selects the backend."""
    auth_params: AuthParams | None = None
    """Credentials: bearer_token; username + password; api_key; or hmac_secret (request signing)."""
    max_connections: int = Field(default=100, ge=1, le=100_000)
    """Pool size: connections open at once across all hosts."""
    max_connections_per_host: int = Field(default=0, ge=0, le=100_000)
    """Connections open at once to one host (0: only ``max_connections`` applies)."""
    backoff_factor: float = Field(default=0.5, ge=0, le=60)
    """First retry delay in seconds; doubles with each retry (with jitter)."""
    max_backoff: float = Field(default=30.0, ge=0, le=3600)
    """Longest delay between two attempts."""
    max_retry_after: float = Field(default=60.0, ge=0, le=3600)
    """Cap on a server's ``Retry-After`` delay, in seconds."""
    retry_methods: list[HttpMethod] = Field(default_factory=lambda: list(IDEMPOTENT_METHODS))
    """Methods also retried after a lost connection or a 502/504 (the server may have acted)."""
    follow_redirects: bool = True
    """Follow 3xx redirects (up to 10)."""
    health_path: str = ""
    """Path that ``validate_connection`` requests (default: the endpoint itself)."""
    health_method: Literal["HEAD", "GET", "OPTIONS"] = "HEAD"
    """Method of the health request; any answer below 500 counts as reachable."""
    check_on_connect: bool = True
    """Make the health request at connect, so an unreachable API fails loudly."""

    # Request statistics outlive a reconnect, so they belong to the resource, not its runtime.
    _counters: RequestCounters = PrivateAttr(default_factory=RequestCounters)

    if TYPE_CHECKING:
        _rt: HttpRuntime | None

    @model_validator(mode="after")
    def _credentials_once(self) -> RestApiResource:
        authority = self.endpoint.partition("://")[2].partition("/")[0]
        if "@" in authority and self.auth_params is not None:
            raise ValueError("give credentials either in the endpoint URL or in auth_params, not both")
        return self

    # ---- requests -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        raw: bool = False,
    ) -> Any:
        """Send a request to ``path`` (relative to ``endpoint``) and return the answer.

        ``json`` is sent as JSON; ``data`` as is (bytes), as text (str) or
        form-encoded (a mapping). ``timeout`` and ``retries`` override the
        resource's for this request. Returns parsed JSON for a JSON answer, text
        for any other, ``None`` for an empty body; with ``raw=True`` an
        :class:`HttpResponse` whatever its status. Raises ``XResourceRequestError``
        (with ``.status``) for an answer >= 400.
        """
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        response = await self._send(
            rt,
            method.upper(),
            path,
            params=params,
            json=json,
            data=data,
            headers=headers,
            timeout=timeout,
            retries=self.retries if retries is None else retries,
        )
        if raw:
            return response
        if response.status >= 400:
            raise self._status_error(method.upper(), response)
        try:
            return response.data()
        except ValueError as exc:
            raise XResourceRequestError(
                f"{self.label}: {method.upper()} {response.url}: the answer is not valid JSON ({exc})",
                response.status,
            ) from None

    async def get(self, path: str = "", *, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """``GET path``; see :meth:`request` for the keyword arguments."""
        return await self.request("GET", path, params=params, **kwargs)

    async def post(self, path: str = "", json: Any = None, **kwargs: Any) -> Any:
        """``POST path`` with ``json`` (or ``data=``) as the body."""
        return await self.request("POST", path, json=json, **kwargs)

    async def put(self, path: str = "", json: Any = None, **kwargs: Any) -> Any:
        """``PUT path`` with ``json`` (or ``data=``) as the body."""
        return await self.request("PUT", path, json=json, **kwargs)

    async def patch(self, path: str = "", json: Any = None, **kwargs: Any) -> Any:
        """``PATCH path`` with ``json`` (or ``data=``) as the body."""
        return await self.request("PATCH", path, json=json, **kwargs)

    async def delete(self, path: str = "", **kwargs: Any) -> Any:
        """``DELETE path``."""
        return await self.request("DELETE", path, **kwargs)

    @property
    def request_stats(self) -> dict[str, int]:
        c = self._counters
        return {"requests": c.requests, "retries": c.retries, "failures": c.failures}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        aiohttp = require("aiohttp", "rest", type_name=self.type)
        yarl = require("yarl", "rest", type_name=self.type)
        base = yarl.URL(self.resolve(self.endpoint))
        headers = {key: self.resolve(value) for key, value in self.headers.items()}
        auth = prepare_auth(self.auth_params, self)
        if base.user is not None:
            # Credentials in the URL become a header, so no URL we print can carry them.
            headers["Authorization"] = basic_header(self, base.user, base.password or "")
            base = base.with_user(None)
        headers.update(auth.static_headers)
        ssl_option = self.ssl_context(self) if base.scheme == "https" else True
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=self.max_connections_per_host, ssl=ssl_option
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout, raise_for_status=False
        )
        base_url = base.with_query(None).with_fragment(None)
        self._rt = HttpRuntime(
            session=session,
            aiohttp=aiohttp,
            url_class=yarl.URL,
            base=str(base_url).rstrip("/"),
            base_url=base_url,
            base_query=base.query if base.query_string else None,
            auth=auth,
            timeout=timeout,
            retry_set=frozenset(self.retry_methods),
            backoff=Backoff(first=self.backoff_factor, cap=self.max_backoff),
            counters=self._counters,
        )
        if self.check_on_connect:
            response = await self._health()
            if response.status >= 500:
                raise self._status_error(self.health_method, response)

    async def _disconnect(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            await rt.session.close()

    async def _validate_connection(self) -> bool:
        response = await self._health()
        if response.status >= 500:
            self._last_error = str(self._status_error(self.health_method, response))
            return False
        return True

    async def _health(self) -> HttpResponse:
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        return await self._send(
            rt,
            self.health_method, self.health_path, params=None, json=None, data=None, headers=None,
            timeout=None, retries=0,
        )  # fmt: skip

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details.update(
            auth=self.auth_params.kind if self.auth_params is not None else None,
            max_connections=self.max_connections,
            **self.request_stats,
        )
        return details

    # ---- the request loop -----------------------------------------------------------------

    async def _send(
        self,
        rt: HttpRuntime,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        retries: int,
    ) -> HttpResponse:
        url = self._url(rt, path, params)
        body, content_type = encode_body(json, data)
        base_headers: dict[str, str] = dict(headers) if headers else {}
        if content_type and not any(key.lower() == "content-type" for key in base_headers):
            base_headers["Content-Type"] = content_type
        client_timeout = None if timeout is None else rt.aiohttp.ClientTimeout(total=timeout)
        idempotent = method in rt.retry_set
        counters = rt.counters
        attempt = 0
        while True:
            attempt += 1
            failure: XResourceError | None = None
            try:
                response = await self._attempt(rt, method, url, body, base_headers, client_timeout)
            except (rt.aiohttp.ClientError, TimeoutError) as exc:
                if attempt > retries or not self._retryable(rt, exc, idempotent):
                    counters.failures += 1
                    failure = self._failure(rt, exc, method, url, attempt, timeout)
                    if self.scrub(str(exc)) == str(exc):
                        raise failure from exc
                delay, reason = rt.backoff.delay(attempt), type(exc).__name__
            else:
                status = response.status
                if (
                    status not in RETRY_STATUSES
                    or attempt > retries
                    or not (idempotent or status in NOT_PROCESSED_STATUSES)
                ):
                    if status >= 400:
                        counters.failures += 1
                    return response
                retry_after = self._retry_after(response.headers.get("Retry-After"))
                delay = rt.backoff.delay(attempt) if retry_after is None else retry_after
                reason = f"HTTP {status}"
            if failure is not None:
                # Raised outside the except block: the driver's text (a URL with
                # the API key, say) must not ride along as __context__.
                raise failure
            counters.retries += 1
            log.info(
                "%s: %s %s: %s; retry %d of %d in %.2fs",
                self.label, method, self.scrub(str(url)), reason, attempt, retries, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        rt: HttpRuntime,
        method: str,
        url: URL,
        body: bytes | None,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout | None,
    ) -> HttpResponse:
        if rt.auth.signs:
            # A fresh timestamp per attempt, so a retry is not refused as a replay.
            headers = {**headers, **rt.auth.signature_headers(method, url.raw_path_qs, body or b"")}
        rt.counters.requests += 1
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}  # None: the session's
        async with rt.session.request(
            method, url, data=body, headers=headers or None, allow_redirects=self.follow_redirects, **options
        ) as resp:
            payload = await resp.read()
            return HttpResponse(
                resp.status,
                resp.reason or "",
                resp.headers,
                payload,
                resp.content_type,
                resp.charset,
                url,
                self.scrub,
            )

    def _retryable(self, rt: HttpRuntime, exc: BaseException, idempotent: bool) -> bool:
        aiohttp = rt.aiohttp
        if isinstance(exc, aiohttp.ClientSSLError):
            return False  # a certificate problem does not go away by asking again
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", None)
        if connect_timeout is not None and isinstance(exc, connect_timeout):
            return True  # the request was never sent
        if isinstance(exc, TimeoutError):
            return False
        if isinstance(exc, aiohttp.ClientConnectorError):
            return True  # refused or unresolvable: nothing was sent
        if isinstance(
            exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError
        ):
            return idempotent
        return False

    def _failure(
        self, rt: HttpRuntime, exc: BaseException, method: str, url: URL, attempts: int, timeout: float | None
    ) -> XResourceError:
        where = f"{self.label}: {method} {self.scrub(str(url))}"
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        detail = self.scrub(str(exc).strip() or type(exc).__name__)
        if isinstance(exc, rt.aiohttp.ClientSSLError):
            return XResourceConnectionError(
                f"{where}: TLS failed: {detail}; to trust a private CA set ca_file"
            )
        if isinstance(exc, TimeoutError):
            seconds = self.timeout if timeout is None else timeout
            return XResourceTimeoutError(f"{where}: no complete answer within {seconds:g}s{tries}")
        return XResourceConnectionError(f"{where} failed{tries}: {detail}")

    def _status_error(self, method: str, response: HttpResponse) -> XResourceError:
        preview = " ".join(response.text()[:ERROR_BODY_PREVIEW].split())
        message = (
            f"{self.label}: {method} {response.url} -> HTTP {response.status} {response.reason}".rstrip()
        )
        if preview:
            message += f": {self.scrub(preview)}"
        return http_status_error(message, response.status)

    def _retry_after(self, value: str | None) -> float | None:
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
        return min(max(seconds, 0.0), self.max_retry_after)

    # ---- URLs -----------------------------------------------------------------------------

    def _url(self, rt: HttpRuntime, path: str, params: Mapping[str, Any] | None) -> URL:
        url = rt.url_cache.get(path)
        if url is None:
            url = self._join(rt, path)
            if len(rt.url_cache) < 512:
                rt.url_cache[path] = url
        if rt.base_query is not None:
            url = url.extend_query(rt.base_query)
        if params:
            url = url.extend_query(params)
        if rt.auth.query_param is not None:
            name, value = rt.auth.query_param
            url = url.update_query({name: value})
        return url

    def _join(self, rt: HttpRuntime, path: str) -> URL:
        if not path:
            return rt.url_class(rt.base_url)  # type: ignore[no-any-return]
        if "://" in path.partition("?")[0]:
            url = rt.url_class(path)
            base = rt.base_url
            inside = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and (
                url.path.rstrip("/") + "/"
            ).startswith(base.path.rstrip("/") + "/")
            if not inside:
                # Credentials must not follow a URL to another service.
                raise ValueError(f"{self.label}: {mask_url_password(path)!r} is outside {self.target()}")
            return url  # type: ignore[no-any-return]
        return rt.url_class(f"{rt.base}/{path.lstrip('/')}")  # type: ignore[no-any-return]

    def scrub(self, text: str) -> str:
        """Remove resolved secrets, URL passwords and the API key query value from ``text``."""
        text = super().scrub(text)
        rt = self._rt
        return text if rt is None else rt.auth.mask_url(text)
