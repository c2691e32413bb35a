"""Spans for MongoDB commands, through PyMongo's command monitoring.

Collection methods go straight to PyMongo, so there is nothing of ours to wrap;
PyMongo instead tells a listener about every command. The listener is handed
to the client at connect, and only when tracing is on: a client without
listeners builds no events, so tracing off costs nothing. Resources connected
before ``instrument()`` get their command spans after their next connect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xresource.telemetry._state import STATE, resource_attributes, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from xresource.resource import XResource

# Handshake, authentication and housekeeping: noise in a trace, and authentication is no one's business.
_SKIPPED = frozenset(
    {
        "hello", "ismaster", "isMaster", "ping", "saslStart", "saslContinue", "authenticate",
        "getnonce", "endSessions", "buildInfo", "buildinfo",
    }
)  # fmt: skip


def add_command_tracing(resource: XResource, client_options: dict[str, Any]) -> None:
    """Add a span-making command listener to ``client_options`` when tracing is on (else nothing)."""
    if STATE.tracer is None:
        return
    listeners = list(client_options.get("event_listeners") or ())
    listeners.append(_command_listener(resource))
    client_options["event_listeners"] = listeners


def _command_listener(resource: XResource) -> Any:
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from pymongo import monitoring

    base = resource_attributes(resource)
    name = resource.name

    class CommandSpans(monitoring.CommandListener):
        """Starts a span when PyMongo sends a command, ends it on the answer."""

        def __init__(self) -> None:
            self.spans: dict[tuple[int, Any], Span] = {}

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            found = tracer()
            if found is None or event.command_name in _SKIPPED:
                return
            attributes = {
                **base,
                "db.operation.name": event.command_name,
                "db.namespace": event.database_name,
            }
            target = event.command.get(event.command_name)
            if isinstance(target, str):
                attributes["db.collection.name"] = target
            # The command document (filters, values) is not recorded: it is data, not a statement.
            span = found.start_span(
                f"{event.command_name} {name}", kind=SpanKind.CLIENT, attributes=attributes
            )
            self.spans[(event.request_id, event.connection_id)] = span

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            span = self.spans.pop((event.request_id, event.connection_id), None)
            if span is not None:
                span.end()

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            span = self.spans.pop((event.request_id, event.connection_id), None)
            if span is not None:
                code = event.failure.get("codeName") or event.failure.get("code") or "error"
                span.set_attribute("error.type", str(code))
                span.set_attribute("db.response.status_code", str(event.failure.get("code", "")))
                span.set_status(Status(StatusCode.ERROR))
                span.end()

    return CommandSpans()
