"""Registry metrics through OpenTelemetry: observable instruments read at each collection.

The same figures as the Prometheus ``/metrics`` route, from ``registry.status()``:
pools (with the semantic conventions' ``db.client.connection.*`` names),
resource state and generation, open leases, and stream counters. Nothing is
counted on the hot paths; the callbacks read the registry when the
``MeterProvider``'s reader collects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from xresource._optional import require

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation


class _Status(Protocol):
    type: str
    state: str
    generation: int
    leases: int
    metadata: dict[str, Any]


class _Registry(Protocol):
    def status(self) -> Mapping[str, _Status]: ...


class RegistryObserver:
    """Returned by :func:`observe`; ``close()`` stops reporting (OpenTelemetry cannot drop instruments)."""

    def __init__(self, registry: _Registry) -> None:
        self.registry: _Registry | None = registry

    def close(self) -> None:
        self.registry = None

    def _statuses(self) -> Iterable[tuple[str, _Status]]:
        registry = self.registry
        return () if registry is None else registry.status().items()


def observe(registry: _Registry, meter_provider: MeterProvider | None = None) -> RegistryObserver:
    """Report ``registry``'s pools, states, leases and streams through OpenTelemetry metrics.

    ``meter_provider`` defaults to the global one (``opentelemetry.metrics.set_meter_provider``).
    """
    metrics = require("opentelemetry.metrics", "otel")
    from xresource import __version__

    provider = meter_provider or metrics.get_meter_provider()
    meter = provider.get_meter("xresource", __version__)
    observer = RegistryObserver(registry)
    observation = metrics.Observation

    def pool(key: str, states: Mapping[str, str] | None = None) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            for name, status in observer._statuses():
                stats = status.metadata.get("pool")
                if not isinstance(stats, dict):
                    continue
                labels = {"db.client.connection.pool.name": name, "xresource.resource.type": status.type}
                if states is None:
                    yield observation(stats.get(key, 0), labels)
                else:
                    for field, state in states.items():
                        yield observation(
                            stats.get(field, 0), {**labels, "db.client.connection.state": state}
                        )

        return callback

    def per_resource(read: Any) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            for name, status in observer._statuses():
                value = read(status)
                if value is not None:
                    yield observation(
                        value, {"xresource.resource.name": name, "xresource.resource.type": status.type}
                    )

        return callback

    def stream(key: str) -> Any:
        return per_resource(
            lambda s: (s.metadata.get("stream") or {}).get(key) if "stream" in s.metadata else None
        )

    meter.create_observable_up_down_counter(
        "db.client.connection.count",
        [pool("", {"in_use": "used", "idle": "idle"})],
        unit="{connection}",
        description="Pooled connections by state",
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.max", [pool("max")], unit="{connection}", description="Pool size limit"
    )
    meter.create_observable_up_down_counter(
        "db.client.connection.pending_requests",
        [pool("waiters")],
        unit="{request}",
        description="Operations waiting for a pooled connection",
    )
    meter.create_observable_gauge(
        "xresource.resource.ready",
        [per_resource(lambda s: 1 if s.state == "ready" else 0)],
        description="1 while the resource is ready",
    )
    meter.create_observable_gauge(
        "xresource.resource.generation",
        [per_resource(lambda s: s.generation)],
        description="Swaps of the resource",
    )
    meter.create_observable_up_down_counter(
        "xresource.leases.open", [per_resource(lambda s: s.leases)], unit="{lease}", description="Open leases"
    )
    for key, description in (
        ("received", "Messages received"),
        ("dropped", "Messages dropped by the drop_oldest overflow policy"),
        ("reconnects", "Reconnects"),
    ):
        meter.create_observable_counter(f"xresource.stream.{key}", [stream(key)], description=description)
    return observer
