"""OpenTelemetry for xresource (the ``otel`` extra): spans, trace context, metrics.

- :func:`instrument` turns tracing on: a span per database query, transaction,
  MongoDB command, REST request, stream publish and handled stream message,
  with the resource's name, type and manifest hash; REST requests and stream
  messages (where the broker has headers) carry the W3C trace context.
  :func:`uninstrument` turns it off again.
- :func:`observe` reports a registry's pools, states, leases and streams as
  OpenTelemetry metrics.
- ``xresource.telemetry.streams`` holds the span scopes around a publish and a
  handled message (``_stream_patches`` puts them around the stream methods).

Off by default, and free while off: nothing is wrapped, on any path.
No attribute holds a resolved secret (see
docs/observability.md for what each span records).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xresource._optional import require
from xresource.telemetry._patches import patch_all, unpatch_all
from xresource.telemetry._state import STATE
from xresource.telemetry.metrics import RegistryObserver, observe

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


def instrument(tracer_provider: TracerProvider | None = None, *, statements: bool = True) -> None:
    """Trace resource operations with ``tracer_provider`` (default: the global one).

    Call it once at start-up, before the registry connects (MongoDB clients get
    their command listener at connect). ``statements=False`` leaves the SQL text
    out of ``db.query.text``; with it on, the text is what your code passed
    (values sent as parameters are never recorded), with the resource's
    resolved secrets scrubbed. Calling it again replaces the provider.
    """
    trace = require("opentelemetry.trace", "otel")
    from xresource import __version__

    provider = tracer_provider or trace.get_tracer_provider()
    STATE.statements = statements
    patch_all()
    STATE.tracer = provider.get_tracer("xresource", __version__)


def uninstrument() -> None:
    """Turn tracing off and put the original methods back."""
    STATE.tracer = None
    unpatch_all()


def is_instrumented() -> bool:
    return STATE.tracer is not None


__all__ = ["RegistryObserver", "instrument", "is_instrumented", "observe", "uninstrument"]
