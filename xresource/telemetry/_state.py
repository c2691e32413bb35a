"""The switch, and what every span of a resource carries.

``STATE.tracer`` is ``None`` until :func:`xresource.telemetry.instrument` runs,
and until then no method is even wrapped (see ``_patches`` and ``_stream_patches``). Nothing here imports
OpenTelemetry; ``instrument`` does, so the extra stays optional.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from xresource.errors import XResourceError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from xresource.resource import XResource

STATEMENT_LIMIT = 2048
"""Characters of a statement kept in ``db.query.text``."""

DB_SYSTEMS = {"postgresql": "postgresql", "mysql": "mysql", "mongodb": "mongodb"}


class TelemetryState:
    """What ``instrument`` set up; one per process."""

    __slots__ = ("statements", "tracer")

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self.statements = True


STATE = TelemetryState()
QUIET: ContextVar[bool] = ContextVar("xresource_telemetry_quiet", default=False)
"""True inside health checks (no spans); stream consumer spans turn it off for the handlers."""


def tracer() -> Tracer | None:
    """The tracer to use now, or ``None``: tracing is off, or this is a health check."""
    found = STATE.tracer
    if found is None or QUIET.get():
        return None
    return found


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No spans inside (health checks run every few seconds and would bury real work)."""
    token = QUIET.set(True)
    try:
        yield
    finally:
        QUIET.reset(token)


# ---- attributes ---------------------------------------------------------------------------------

_CACHE: dict[int, tuple[weakref.ref[Any], object, dict[str, Any]]] = {}


def resource_attributes(resource: XResource) -> dict[str, Any]:
    """Name, type, version and where the resource points, from its manifest as written.

    The registry's generation counter is not known to a resource; the manifest
    hash (``xresource.resource.manifest_hash``) identifies the version it runs
    instead, and ``registry.status()`` maps it to the generation. Host, port and
    database are included only when written literally (a ``${...}`` reference is
    left out, and no resolved value is ever read).
    """
    key = id(resource)
    origin = (resource.__pydantic_private__ or {}).get("_origin")
    cached = _CACHE.get(key)
    if cached is not None and cached[0]() is resource and cached[1] is origin:
        return cached[2]
    attributes = _build(resource)
    _CACHE[key] = (weakref.ref(resource, functools.partial(_forget, key)), origin, attributes)
    return attributes


def _forget(key: int, _: object) -> None:
    _CACHE.pop(key, None)


def _build(resource: XResource) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "xresource.resource.name": resource.name,
        "xresource.resource.type": resource.type,
    }
    if resource.manifest_hash:
        attributes["xresource.resource.manifest_hash"] = resource.manifest_hash
    system = DB_SYSTEMS.get(resource.type)
    if system is not None:
        attributes["db.system.name"] = system
    host: str | None = None
    port: int | None = None
    url_parts = getattr(resource, "url_parts", None)
    parts = url_parts() if callable(url_parts) else None
    if parts is not None:
        host, port = parts.host, parts.port or getattr(resource, "default_port", None)
        database = getattr(resource, "database_name", None) or parts.database
        if database and "${" not in database:
            attributes["db.namespace"] = database
    elif resource.family == "network":
        split = urlsplit(resource.target())  # the endpoint with any password masked
        with contextlib.suppress(ValueError):
            host, port = split.hostname, split.port or (443 if split.scheme == "https" else 80)
    if host and "${" not in host and "%7B" not in host:
        attributes["server.address"] = host
        if port:
            attributes["server.port"] = port
    return attributes


def statement(resource: XResource, text: object) -> str | None:
    """The statement for ``db.query.text``: scrubbed of the resource's secrets, bounded; or None."""
    if not STATE.statements or not isinstance(text, str):
        return None
    return resource.scrub(text)[:STATEMENT_LIMIT]


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed: ``error.type`` is the class; our messages (never a secret) as the status."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(exc) if isinstance(exc, XResourceError) else None))
