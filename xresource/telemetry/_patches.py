"""Spans for database queries, transactions and REST requests, by wrapping the backends' methods.

``instrument()`` replaces a handful of methods on the built-in classes with
wrappers that open a span and call the original; ``uninstrument()`` puts the
originals back. Until then the classes hold their own functions, so a query
with tracing off runs exactly the code it runs without this module: the
cost is zero, not small. This is how OpenTelemetry's own instrumentations
work, and it needs no hook in the backends' hot paths.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from xresource.factory import BUILTIN_TYPES
from xresource.telemetry._state import STATE, failed, quiet, resource_attributes, statement, tracer
from xresource.telemetry._stream_patches import patch_streams

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager, AbstractContextManager
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Tracer

    from xresource.resource import XResource

QUERIES = ("fetch", "fetchrow", "fetchval", "execute", "executemany")
"""SQL methods whose first argument is the statement."""

_SQL_TYPES = ("postgresql", "mysql")
_DB_TYPES = (*_SQL_TYPES, "mongodb")

_saved: list[tuple[type, str, Any]] = []  # (class, attribute, original) for uninstrument


def patch_all() -> None:
    """Wrap the built-in classes' operations (once)."""
    if _saved:
        return
    from xresource.resource import XResource

    _wrap(XResource, "validate_connection", _quiet)
    _wrap(XResource, "connect", _quiet)  # the REST health request at connect is a health check too
    for type_name in _DB_TYPES:
        cls = _builtin_class(type_name)
        if type_name in _SQL_TYPES:
            for name in QUERIES:
                _wrap(cls, name, functools.partial(_query, operation=name))
        _wrap(cls, "transaction", _transaction)
        _wrap(cls, "list_collections_or_tables", functools.partial(_operation, operation="list_tables"))
    _wrap(_builtin_class("rest_api"), "_send", _http)
    patch_streams(_wrap, _builtin_class)


def unpatch_all() -> None:
    while _saved:
        cls, name, original = _saved.pop()
        setattr(cls, name, original)


def _builtin_class(type_name: str) -> type:
    module, _, attribute = BUILTIN_TYPES[type_name].path.partition(":")
    cls: type = getattr(importlib.import_module(module), attribute)  # models only: no driver import
    return cls


def _wrap(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    original = cls.__dict__[name]
    _saved.append((cls, name, original))
    setattr(cls, name, make(original))


# ---- wrappers ---------------------------------------------------------------------------------------

# Spans record no exception events (a driver's message may quote anything): ``failed`` records what is safe.


def _client_span(
    found: Tracer, kind: SpanKind, name: str, attributes: dict[str, Any]
) -> AbstractContextManager[Span]:
    """A client span, current while open; errors are recorded by ``failed`` (with our class)."""
    return found.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    )


def _quiet(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def untraced(self: XResource) -> Any:
        with quiet():
            return await original(self)

    return untraced


def _query(original: Callable[..., Awaitable[Any]], operation: str) -> Callable[..., Awaitable[Any]]:
    from opentelemetry.trace import SpanKind

    @functools.wraps(original)
    async def traced(self: XResource, query: Any, *args: Any, **kwargs: Any) -> Any:
        found = tracer()
        if found is None:
            return await original(self, query, *args, **kwargs)
        attributes = {**resource_attributes(self), "xresource.operation": operation}
        text = statement(self, query)
        if text is not None:
            attributes["db.query.text"] = text
        with _client_span(found, SpanKind.CLIENT, f"{operation} {self.name}", attributes) as span:
            try:
                return await original(self, query, *args, **kwargs)
            except BaseException as exc:
                failed(span, exc)
                raise

    return traced


def _operation(original: Callable[..., Awaitable[Any]], operation: str) -> Callable[..., Awaitable[Any]]:
    from opentelemetry.trace import SpanKind

    @functools.wraps(original)
    async def traced(self: XResource, *args: Any, **kwargs: Any) -> Any:
        found = tracer()
        if found is None:
            return await original(self, *args, **kwargs)
        attributes = {**resource_attributes(self), "xresource.operation": operation}
        with _client_span(found, SpanKind.CLIENT, f"{operation} {self.name}", attributes) as span:
            try:
                return await original(self, *args, **kwargs)
            except BaseException as exc:
                failed(span, exc)
                raise

    return traced


def _transaction(original: Callable[..., AbstractAsyncContextManager[Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    def transaction(self: XResource, **options: Any) -> AbstractAsyncContextManager[Any]:
        block = original(self, **options)  # bad options raise here, before any span
        return _TracedBlock(block, self, options)

    return transaction


class _TracedBlock:
    """A span around ``async with db.transaction()``: from the lease to the commit or rollback."""

    __slots__ = ("_block", "_options", "_resource", "_span", "_token")

    def __init__(self, block: AbstractAsyncContextManager[Any], resource: XResource, options: dict[str, Any]):
        self._block = block
        self._resource = resource
        self._options = options
        self._span: Span | None = None
        self._token: Token[Context] | None = None

    async def __aenter__(self) -> Any:
        found = tracer()
        if found is not None:
            from opentelemetry import context, trace

            attributes = {**resource_attributes(self._resource), "xresource.operation": "transaction"}
            for key in ("isolation", "readonly", "read_concern"):
                value = self._options.get(key)
                if value is not None:
                    attributes[f"xresource.transaction.{key}"] = value
            span = found.start_span(
                f"transaction {self._resource.name}", kind=trace.SpanKind.CLIENT, attributes=attributes
            )
            self._span = span
            self._token = context.attach(trace.set_span_in_context(span))
        try:
            return await self._block.__aenter__()
        except BaseException as exc:
            self._end(exc)
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            result = await self._block.__aexit__(kind, exc, tb)
        except BaseException as error:
            self._end(error)
            raise
        self._end(exc)
        return result

    def _end(self, exc: BaseException | None) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        from opentelemetry import context

        if exc is not None:
            span.set_attribute("xresource.transaction.outcome", "rollback")
            failed(span, exc)
        else:
            span.set_attribute("xresource.transaction.outcome", "commit")
        span.end()
        if self._token is not None:  # set together with the span
            context.detach(self._token)
            self._token = None


def _http(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """One client span per request (retries included), its context sent as ``traceparent``."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, Status, StatusCode

    @functools.wraps(original)
    async def traced(
        self: XResource, rt: Any, method: str, path: str, params: Any, json: Any, data: Any,
        headers: Any, timeout: Any, retries: int,
    ) -> Any:  # fmt: skip
        found = tracer()
        if found is None:
            return await original(self, rt, method, path, params, json, data, headers, timeout, retries)
        attributes = {**resource_attributes(self), "http.request.method": method}
        with _client_span(found, SpanKind.CLIENT, f"{method} {self.name}", attributes) as span:
            headers = dict(headers or {})
            propagate.inject(headers)  # the W3C traceparent of this span (the global propagator)
            try:
                response = await original(
                    self, rt, method, path, params, json, data, headers, timeout, retries
                )
            except BaseException as exc:
                failed(span, exc)
                raise
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
                span.set_status(Status(StatusCode.ERROR))
            return response

    return traced


def enabled() -> bool:
    return STATE.tracer is not None
