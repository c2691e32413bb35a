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

Errors, all with ``.status`` when the server answered: 401/403 raise
``XResourceAuthenticationError`` (also an ``XResourceRequestError``); other
4xx answers ``XResourceQueryError`` (the request is wrong: retrying will not
help), except 408 and 429, which like 5xx answers raise
``XResourceRequestError`` (a connection error: retrying may help); timeouts
raise ``XResourceTimeoutError``, unreachable servers ``XResourceConnectionError``. Messages never hold a resolved secret, and the
API key query parameter shows as ``***``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, model_validator

from xresource._optional import require
from xresource._transport.auth import AuthParams, basic_header, prepare_auth
from xresource._transport.backoff import Backoff
from xresource._transport.http import http_status_error
from xresource.backends.network._base import NetworkResource
from xresource.backends.network._http_response import HttpResponse, encode_body
from xresource.backends.network._http_retry import (
    IDEMPOTENT_METHODS,
    NOT_PROCESSED_STATUSES,
    RETRY_STATUSES,
    HttpMethod,
    retry_after,
    retryable,
)
from xresource.backends.network._http_runtime import HttpRuntime, RequestCounters
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceRequestError,
    XResourceTimeoutError,
)
from xresource.secrets import mask_url_password

if TYPE_CHECKING:
    from yarl import URL

log = logging.getLogger("xresource.network.rest_api")

ERROR_BODY_PREVIEW = 200  # characters of an error answer quoted in the exception

__all__ = ["HttpResponse", "HttpRuntime", "RequestCounters", "RestApiResource", "encode_body"]


class RestApiResource(NetworkResource):
    """An HTTP/JSON API: ``get``/``post``/``put``/``patch``/``delete``/``request``."""

    install_extra: ClassVar[str | None] = "rest"

    type: Literal["rest_api"] = "rest_api"
    example_name: ClassVar[str | None] = "payments_api"
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
        :class:`HttpResponse` whatever its status. An answer >= 400 raises an error
        with ``.status``: ``XResourceQueryError`` for a 4xx (authentication for
        401/403, ``XResourceRequestError`` for 408/429), ``XResourceRequestError``
        for a 5xx.
        """
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        method = method.upper()
        response = await self._send(
            rt,
            method,
            path,
            params,
            json,
            data,
            headers,
            timeout,
            self.retries if retries is None else retries,
        )
        return response if raw else self._answer(method, response)

    async def get(
        self,
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
        """``GET path``; see :meth:`request` for the keyword arguments."""
        # request()'s body rather than a call to it: one coroutine less on the most common call.
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        response = await self._send(
            rt,
            "GET",
            path,
            params,
            json,
            data,
            headers,
            timeout,
            self.retries if retries is None else retries,
        )
        return response if raw else self._answer("GET", response)

    def _answer(self, method: str, response: HttpResponse) -> Any:
        """The parsed body of a successful answer; the error of a failed one."""
        if response.status >= 400:
            raise self._status_error(method, response)
        try:
            return response.data()
        except ValueError as exc:
            raise XResourceRequestError(
                f"{self.label}: {method} {response.url}: the answer is not valid JSON ({exc})",
                response.status,
            ) from None

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
            signs=auth.signs,
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
        return await self._send(rt, self.health_method, self.health_path, None, None, None, None, None, 0)

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
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        retries: int,
    ) -> HttpResponse:
        """Send with retries (positional arguments: this runs once per request)."""
        url = self._url(rt, path, params)
        if json is None and data is None:
            body: bytes | None = None
            sent_headers = headers or None  # aiohttp copies it
        else:
            body, content_type = encode_body(json, data)
            sent_headers = dict(headers) if headers else {}
            if content_type and not any(key.lower() == "content-type" for key in sent_headers):
                sent_headers["Content-Type"] = content_type
        # The session's own timeout unless the call gives one (aiohttp reads None as "no limit").
        client_timeout = rt.timeout if timeout is None else rt.aiohttp.ClientTimeout(total=timeout)
        follow = self.follow_redirects
        counters = rt.counters
        attempt = 0
        while True:
            attempt += 1
            failure: XResourceError | None = None
            if rt.signs:
                # A fresh timestamp per attempt, so a retry is not refused as a replay.
                signature = rt.auth.signature_headers(method, url.raw_path_qs, body or b"")
                attempt_headers: Mapping[str, str] | None = {**(sent_headers or {}), **signature}
            else:
                attempt_headers = sent_headers
            counters.requests += 1
            try:
                async with rt.session.request(
                    method,
                    url,
                    data=body,
                    headers=attempt_headers,
                    allow_redirects=follow,
                    timeout=client_timeout,
                ) as resp:
                    response = HttpResponse(
                        resp.status, resp.reason or "", resp.headers, await resp.read(), resp, url, self.scrub
                    )
            except (rt.aiohttp.ClientError, TimeoutError) as exc:
                if attempt > retries or not retryable(rt.aiohttp, exc, method in rt.retry_set):
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
                    or not (status in NOT_PROCESSED_STATUSES or method in rt.retry_set)
                ):
                    if status >= 400:
                        counters.failures += 1
                    return response
                wait = retry_after(response.headers.get("Retry-After"), self.max_retry_after)
                delay = rt.backoff.delay(attempt) if wait is None else wait
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
            return rt.url_class(rt.base_url)
        if "://" in path.partition("?")[0]:
            url = rt.url_class(path)
            base = rt.base_url
            inside = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and (
                url.path.rstrip("/") + "/"
            ).startswith(base.path.rstrip("/") + "/")
            if not inside:
                # Credentials must not follow a URL to another service.
                raise ValueError(f"{self.label}: {mask_url_password(path)!r} is outside {self.target()}")
            return url
        return rt.url_class(f"{rt.base}/{path.lstrip('/')}")

    def scrub(self, text: str) -> str:
        """Remove resolved secrets, URL passwords and the API key query value from ``text``."""
        text = super().scrub(text)
        rt = self._rt
        return text if rt is None else rt.auth.mask_url(text)
