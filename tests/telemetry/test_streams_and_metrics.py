"""The stream hooks (trace context through each broker's header shape) and registry metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.services import require_service
from xresource import Registry, telemetry
from xresource.backends.streams.kafka import KafkaResource
from xresource.telemetry.streams import consuming, publishing

KAFKA = KafkaResource(name="orders_events", bootstrap_servers="127.0.0.1:9092")


def test_off_the_hooks_hand_back_the_very_headers() -> None:
    headers: list[tuple[str, bytes]] = [("k", b"v")]
    with publishing(KAFKA, "orders", headers, carrier="byte_pairs") as sent:
        assert sent is headers
    with publishing(KAFKA, "orders", None) as sent:
        assert sent is None
    with consuming(KAFKA, "orders", headers) as nothing:
        assert nothing is None


@pytest.mark.parametrize(
    ("carrier", "headers", "name_of"),
    [
        ("byte_pairs", [("k", b"v")], lambda pair: pair[0]),  # Kafka
        ("pairs", [("k", "v")], lambda pair: pair[0]),  # MQTT 5 user properties
        ("mapping", {"k": "v"}, lambda key: key),  # RabbitMQ
        ("mapping", None, lambda key: key),
    ],
)
def test_a_handled_message_continues_the_producers_trace(
    exporter: InMemorySpanExporter, provider: TracerProvider, carrier: Any, headers: Any, name_of: Any
) -> None:
    before = repr(headers)
    with (
        provider.get_tracer("app").start_as_current_span("place order"),
        publishing(KAFKA, "orders", headers, carrier=carrier) as sent,
    ):
        pass
    assert repr(headers) == before  # the caller's headers are not changed
    assert "traceparent" in [name_of(item) for item in sent]
    if headers:
        assert ("k" in sent) if isinstance(sent, dict) else (headers[0] in sent)
    with consuming(KAFKA, "orders", sent):  # in another process, as far as the context goes
        pass
    spans = exporter.get_finished_spans()
    publish = next(s for s in spans if s.name == "publish orders")
    process = next(s for s in spans if s.name == "process orders")
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == publish.context.trace_id
    attributes = process.attributes or {}
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == "orders"
    assert attributes["xresource.resource.name"] == "orders_events"


def test_a_failing_handler_marks_its_span(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), consuming(KAFKA, "orders", [("traceparent", b"garbage"), ("x", 1)]):
        raise KeyError("handler bug")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "KeyError"
    assert span.parent is None  # an unreadable traceparent starts a new trace


async def test_registry_pools_and_states_as_metrics(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    (tmp_path / "db.yaml").write_text(
        "name: orders_db\ntype: postgresql\nconnection_string: postgresql://postgres@127.0.0.1:5432/test\n"
        "min_pool_size: 2\nmax_pool_size: 4\n"
    )
    reader = InMemoryMetricReader()
    async with Registry(tmp_path) as registry:
        observer = telemetry.observe(registry, MeterProvider(metric_readers=[reader]))
        async with registry.get("orders_db").acquire():
            data = reader.get_metrics_data()
        observer.close()
        after_close = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    by_state = {
        p.attributes["db.client.connection.state"]: p.value for p in points["db.client.connection.count"]
    }
    assert by_state == {"used": 1, "idle": 1}
    assert [p.value for p in points["db.client.connection.max"]] == [4]
    assert points["db.client.connection.max"][0].attributes["db.client.connection.pool.name"] == "orders_db"
    assert [p.value for p in points["xresource.resource.ready"]] == [1]
    assert [p.value for p in points["xresource.leases.open"]] == [0]
    assert [p.value for p in points["xresource.resource.generation"]] == [1]
    closed = [
        m for rm in (after_close.resource_metrics if after_close else []) for s in rm.scope_metrics for m in s.metrics
        if m.data.data_points
    ]  # fmt: skip
    assert closed == []
