"""Stream spans through the real brokers: a publish and the handling of that message share a trace."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.brokers import RabbitVhost, kafka_broker, rabbitmq_vhost
from tests.support.services import require_service
from tests.support.waiting import eventually
from xresource import telemetry
from xresource.backends.streams._base import EventStreamResource
from xresource.backends.streams._pipeline import Pipeline
from xresource.backends.streams.kafka import KafkaResource
from xresource.backends.streams.mqtt import MqttResource
from xresource.backends.streams.rabbitmq import RabbitMQResource
from xresource.backends.streams.redis_pubsub import RedisPubSubResource

__all__ = ["kafka_broker", "rabbitmq_vhost"]  # session fixtures, imported for pytest

PASSWORD_ENV = "XR_TEL_STREAM_PW"


def unique(prefix: str, sep: str = "-") -> str:
    return f"{prefix}{sep}{uuid.uuid4().hex[:10]}"


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def recorded_text(spans: Sequence[ReadableSpan]) -> str:
    parts: list[str] = []
    for span in spans:
        parts += [f"{key}={value}" for key, value in (span.attributes or {}).items()]
        parts.append(span.status.description or "")
        parts += [str(event.attributes) for event in span.events]
    return "\n".join(parts)


@pytest.fixture
def rabbit(rabbitmq_vhost: RabbitVhost, monkeypatch: pytest.MonkeyPatch) -> Callable[[], RabbitMQResource]:
    monkeypatch.setenv(PASSWORD_ENV, rabbitmq_vhost.password)
    url = rabbitmq_vhost.url(f"${{env:{PASSWORD_ENV}}}")
    return lambda: RabbitMQResource(name="orders_bus", connection_string=url)


def kafka(servers: str) -> KafkaResource:
    return KafkaResource(name="orders_log", bootstrap_servers=servers, consumer_config={"fetch_max_wait_ms": 20})


def mqtt5() -> MqttResource:
    require_service("Mosquitto", "127.0.0.1", 1883)
    return MqttResource(name="orders_mqtt", connection_string="mqtt://127.0.0.1:1883", protocol="5", qos=1)


async def publish_and_handle(
    stream: EventStreamResource, channel: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> tuple[ReadableSpan, ReadableSpan]:
    got: list[Any] = []
    async with stream:
        await stream.subscribe(channel, got.append)
        with provider.get_tracer("app").start_as_current_span("place order"):
            await stream.publish(channel, {"order": 7})
        await eventually(lambda: got == [{"order": 7}], what="the message handled")
        await eventually(lambda: spans_named(exporter, f"process {channel}"), what="the consumer span")
    (publish,) = spans_named(exporter, f"publish {channel}")
    (process,) = spans_named(exporter, f"process {channel}")
    return publish, process


def assert_one_trace(publish: ReadableSpan, process: ReadableSpan, system: str, channel: str) -> None:
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    for span in (publish, process):
        attributes = span.attributes or {}
        assert attributes["messaging.system"] == system
        assert attributes["messaging.destination.name"] == channel
        assert attributes["xresource.resource.type"] == system if system != "redis" else "redis_pubsub"


async def test_kafka_trace_crosses_the_broker_in_record_headers(
    kafka_broker: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = unique("traced")
    publish, process = await publish_and_handle(kafka(kafka_broker), topic, provider, exporter)
    assert_one_trace(publish, process, "kafka", topic)


async def test_kafka_keeps_the_callers_headers_next_to_the_trace_context(
    kafka_broker: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = unique("traced")
    records: list[dict[str, Any]] = []
    stream = kafka(kafka_broker)
    async with stream:
        iterator = stream.messages()
        await stream.subscribe(topic)
        mine = [("tenant", b"acme")]
        await stream.produce(topic, "x", headers=mine)
        async for message in iterator:
            records.append(message.meta)
            break
        await iterator.aclose()
    assert mine == [("tenant", b"acme")]  # not changed by the instrumentation
    headers = dict(records[0]["headers"])
    assert headers["tenant"] == b"acme"
    assert headers["traceparent"].startswith(b"00-")


async def test_rabbitmq_trace_crosses_the_broker_in_message_headers(
    rabbit: Callable[[], RabbitMQResource], provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    key = unique("orders", ".")
    publish, process = await publish_and_handle(rabbit(), key, provider, exporter)
    assert_one_trace(publish, process, "rabbitmq", key)
    assert_no_secret(exporter, [_password()])


def _password() -> str:
    import os

    return os.environ[PASSWORD_ENV]


def assert_no_secret(exporter: InMemorySpanExporter, secrets: list[str]) -> None:
    text = recorded_text(exporter.get_finished_spans())
    assert text  # something was recorded
    for secret in secrets:
        assert secret not in text


async def test_mqtt5_trace_crosses_the_broker_in_user_properties(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic = unique("traced/orders", "/")
    publish, process = await publish_and_handle(mqtt5(), topic, provider, exporter)
    assert_one_trace(publish, process, "mqtt", topic)


async def test_mqtt5_user_properties_reach_the_receiver_with_tracing_off() -> None:
    topic = unique("props", "/")
    stream = mqtt5()
    async with stream:
        iterator = stream.messages()
        await stream.subscribe(topic)
        await stream.publish(topic, "x", user_properties=[("tenant", "acme")])
        message = await anext(aiter(iterator))
        await iterator.aclose()
    assert message.meta["headers"] == [("tenant", "acme")]


async def test_mqtt311_has_no_user_properties() -> None:
    require_service("Mosquitto", "127.0.0.1", 1883)
    async with MqttResource(name="old", connection_string="mqtt://127.0.0.1:1883") as stream:
        with pytest.raises(ValueError, match="need MQTT 5"):
            await stream.publish("t", "x", user_properties=[("a", "b")])


async def test_redis_spans_have_no_parent_across_the_broker(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    channel = unique("traced")
    stream = RedisPubSubResource(name="orders_feed", connection_string="redis://127.0.0.1:6379/0")
    publish, process = await publish_and_handle(stream, channel, provider, exporter)
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is None  # no headers: handling starts a trace of its own
    assert (process.attributes or {})["messaging.system"] == "redis"


async def test_a_failing_handler_marks_its_span_and_work_inside_a_handler_is_traced(
    kafka_broker: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    topic, echo = unique("orders"), unique("echo")
    stream = kafka(kafka_broker)
    echoed: list[Any] = []

    def broken(data: Any) -> None:
        raise LookupError("a bug in the handler, quoting hunter2")

    async def forward(data: Any) -> None:  # an async handler: the buffered path
        await stream.publish(echo, data)

    async with stream:
        await stream.subscribe(topic, broken)
        await stream.subscribe(echo, echoed.append)
        stream.on(topic, forward)
        await stream.publish(topic, {"n": 1})
        await eventually(lambda: echoed == [{"n": 1}], what="the echo")
        await eventually(lambda: spans_named(exporter, f"process {echo}"), what="the echo's consumer span")
    (process,) = spans_named(exporter, f"process {topic}")
    assert process.status.status_code is StatusCode.ERROR
    assert (process.attributes or {})["error.type"] == "LookupError"
    assert "hunter2" not in recorded_text(exporter.get_finished_spans())
    # The publish made by the handler is a child of the handling span, and so on down the line.
    (inner,) = spans_named(exporter, f"publish {echo}")
    assert inner.parent is not None
    assert inner.parent.span_id == process.context.span_id
    (echo_process,) = spans_named(exporter, f"process {echo}")
    assert echo_process.parent is not None
    assert echo_process.parent.span_id == inner.context.span_id
    assert stream.counters.handler_errors == 1


def test_off_the_stream_classes_hold_their_own_functions(provider: TracerProvider) -> None:
    watched = [
        (Pipeline, "offer"),
        (Pipeline, "dispatch"),
        (Pipeline, "_failed"),
        (KafkaResource, "produce"),
        (RabbitMQResource, "publish"),
        (MqttResource, "publish"),
        (RedisPubSubResource, "publish"),
    ]
    originals = [cls.__dict__[name] for cls, name in watched]
    telemetry.instrument(provider)
    try:
        assert all(cls.__dict__[name] is not f for (cls, name), f in zip(watched, originals, strict=True))
    finally:
        telemetry.uninstrument()
    assert [cls.__dict__[name] for cls, name in watched] == originals
