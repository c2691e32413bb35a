"""One-line hooks for stream backends: a span per publish and per handled message, with trace context.

A backend calls, around each operation::

    with publishing(self, topic, headers, carrier="byte_pairs") as headers:   # Kafka
        await producer.send(topic, payload, headers=headers)

    with consuming(self, topic, record.headers):
        await self._deliver(message)        # the user's handler runs inside the span

``publishing`` yields the message headers with ``traceparent`` (and
``tracestate``) added, in the carrier's own shape: ``"mapping"`` (a dict:
RabbitMQ, REST-like), ``"pairs"`` (a list of ``(str, str)``: MQTT 5 user
properties) or ``"byte_pairs"`` (a list of ``(str, bytes)``: Kafka). A copy is
yielded; what the caller passed is not changed. ``consuming`` reads the trace
context from the incoming headers (any of those shapes; bytes are decoded),
so the handler's span continues the producer's trace. Brokers without
headers (Redis Pub/Sub, WebSocket, SSE) pass ``None``: the span is still made.

With tracing off both return at once after one attribute test, yielding the
headers exactly as passed (the same object, ``None`` included).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from xresource.telemetry._state import STATE, failed, resource_attributes, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from xresource.resource import XResource

Carrier = Literal["mapping", "pairs", "byte_pairs"]
H = TypeVar("H")

MESSAGING_SYSTEMS = {
    "kafka": "kafka",
    "rabbitmq": "rabbitmq",
    "mqtt": "mqtt",
    "redis_pubsub": "redis",
    "websocket": "websocket",
    "sse": "sse",
}


class _Passthrough:
    """What the hooks return with tracing off: yields the headers untouched, records nothing."""

    __slots__ = ("headers",)

    def __init__(self, headers: Any) -> None:
        self.headers = headers

    def __enter__(self) -> Any:
        return self.headers

    def __exit__(self, *exc_info: object) -> None:
        return None


_NOTHING = _Passthrough(None)  # stateless when it holds None: shared by every call with tracing off


def publishing(resource: XResource, destination: str, headers: H, *, carrier: Carrier = "mapping") -> Any:
    """A PRODUCER span ``publish <destination>``; yields ``headers`` with the trace context added."""
    if STATE.tracer is None:  # tracing off: the one test the hot path pays
        return _NOTHING if headers is None else _Passthrough(headers)
    found = tracer()
    if found is None:
        return _Passthrough(headers)
    return _Publish(found, resource, destination, headers, carrier)


def consuming(resource: XResource, source: str, headers: object = None) -> Any:
    """A CONSUMER span ``process <source>`` around handling one message, continuing its trace."""
    if STATE.tracer is None:
        return _NOTHING
    found = tracer()
    if found is None:
        return _NOTHING
    return _Consume(found, resource, source, headers)


def _attributes(resource: XResource, destination: str, operation: str) -> dict[str, Any]:
    attributes = {
        **resource_attributes(resource),
        "messaging.destination.name": destination,
        "messaging.operation.type": operation,
    }
    system = MESSAGING_SYSTEMS.get(resource.type)
    if system is not None:
        attributes["messaging.system"] = system
    return attributes


class _SpanScope:
    """Makes ``span`` current between enter and exit, and ends it (failed when an exception passes)."""

    __slots__ = ("_span", "_token")

    def _open(self, span: Span) -> None:
        from opentelemetry import context, trace

        self._span = span
        self._token = context.attach(trace.set_span_in_context(span))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from opentelemetry import context

        if exc is not None:
            failed(self._span, exc)
        self._span.end()
        context.detach(self._token)


class _Publish(_SpanScope):
    __slots__ = ("_carrier", "_headers")

    def __init__(self, found: Tracer, resource: XResource, destination: str, headers: Any, carrier: Carrier):
        from opentelemetry.trace import SpanKind

        self._headers = headers
        self._carrier = carrier
        self._open(
            found.start_span(
                f"publish {destination}",
                kind=SpanKind.PRODUCER,
                attributes=_attributes(resource, destination, "send"),
            )
        )

    def __enter__(self) -> Any:
        from opentelemetry import propagate

        context: dict[str, str] = {}
        propagate.inject(context)
        return _merged(self._headers, context, self._carrier)


class _Consume(_SpanScope):
    __slots__ = ()

    def __init__(self, found: Tracer, resource: XResource, source: str, headers: object):
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        incoming = _as_text_mapping(headers)
        parent = propagate.extract(incoming) if incoming else None
        self._open(
            found.start_span(
                f"process {source}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=_attributes(resource, source, "process"),
            )
        )

    def __enter__(self) -> None:
        return None


def _merged(headers: Any, context: dict[str, str], carrier: Carrier) -> Any:
    if carrier == "mapping":
        return {**(headers or {}), **context}
    names = set(context)
    kept = [pair for pair in (headers or ()) if pair[0] not in names]  # a resent message gets a fresh context
    if carrier == "byte_pairs":
        return kept + [(key, value.encode()) for key, value in context.items()]
    if carrier == "pairs":
        return kept + list(context.items())
    raise ValueError(f"carrier must be 'mapping', 'pairs' or 'byte_pairs', not {carrier!r}")


def _as_text_mapping(headers: object) -> dict[str, str]:
    """Incoming headers as ``{name: text}``: a mapping or ``(name, value)`` pairs; bytes decoded."""
    if not headers:
        return {}
    if isinstance(headers, Mapping):
        items: Iterable[Any] = headers.items()
    elif isinstance(headers, Iterable):
        items = headers
    else:
        return {}  # neither a mapping nor pairs: not ours to read
    found: dict[str, str] = {}
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            continue  # not a pair: not ours to read
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("utf-8", errors="replace")
        if isinstance(key, str) and isinstance(value, str):
            found[key.lower()] = value
    return found
