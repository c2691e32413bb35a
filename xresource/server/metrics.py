"""Prometheus metrics of a registry, collected on each scrape (no bookkeeping on hot paths)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xresource.registry import Registry
from xresource.resource import State

STATES = [s.value for s in State]


class RegistryCollector(Collector):
    """Reads ``registry.status()`` and the backends' pool and stream stats at scrape time."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        reg = self.registry
        state = GaugeMetricFamily(
            "xresource_resource_state",
            "1 for the state each resource is in",
            labels=["name", "type", "state"],
        )
        generation = GaugeMetricFamily(
            "xresource_resource_generation", "Swaps of the resource", labels=["name"]
        )
        leases = GaugeMetricFamily("xresource_leases_open", "Open leases", labels=["name"])
        pool = {
            key: GaugeMetricFamily(f"xresource_pool_{key}", f"Pool connections: {key}", labels=["name"])
            for key in ("size", "in_use", "idle", "waiters", "max")
        }
        received = CounterMetricFamily("xresource_stream_received", "Messages received", labels=["name"])
        dropped = CounterMetricFamily(
            "xresource_stream_dropped", "Messages dropped by the drop_oldest overflow policy", labels=["name"]
        )
        reconnects = CounterMetricFamily("xresource_stream_reconnects", "Reconnects", labels=["name"])
        duplicates = CounterMetricFamily(
            "xresource_stream_duplicates",
            "Messages received twice around a reload hand-over and delivered once",
            labels=["name"],
        )
        pending = GaugeMetricFamily(
            "xresource_resource_pending",
            "1 while the files' version of the resource is not the one running (see status pending)",
            labels=["name"],
        )
        pending_count = 0
        for name, status in reg.status().items():
            for value in STATES:
                state.add_metric([name, status.type, value], 1.0 if status.state == value else 0.0)
            generation.add_metric([name], status.generation)
            pending.add_metric([name], 1.0 if status.pending else 0.0)
            pending_count += 1 if status.pending else 0
            leases.add_metric([name], status.leases)
            stats = status.metadata.get("pool")
            if isinstance(stats, dict):
                for key, family in pool.items():
                    if key in stats:
                        family.add_metric([name], float(stats[key]))
            stream = status.metadata.get("stream")
            if isinstance(stream, dict):
                received.add_metric([name], float(stream.get("received", 0)))
                dropped.add_metric([name], float(stream.get("dropped", 0)))
                reconnects.add_metric([name], float(stream.get("reconnects", 0)))
                duplicates.add_metric([name], float(stream.get("duplicates", 0)))
        yield state
        yield generation
        yield leases
        yield from pool.values()
        yield received
        yield dropped
        yield reconnects
        yield duplicates
        yield pending
        pending_total = GaugeMetricFamily(
            "xresource_resources_pending", "Resources whose desired version is not the one running"
        )
        pending_total.add_metric([], float(pending_count))
        yield pending_total
        reloads = CounterMetricFamily("xresource_reloads", "Reloads by outcome", labels=["outcome"])
        for outcome, count in sorted(reg.reload_counts.items()):
            reloads.add_metric([outcome], float(count))
        yield reloads
        last = GaugeMetricFamily("xresource_last_reload_timestamp_seconds", "Unix time of the last reload")
        last.add_metric([], reg.last_reload_at or 0.0)
        yield last
        ready = GaugeMetricFamily("xresource_ready", "1 when every resource is ready")
        ready.add_metric([], 1.0 if reg.ready else 0.0)
        yield ready
