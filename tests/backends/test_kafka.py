"""kafka against a tansu broker (one per session; a private one for the fault test)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from tests.backends.stream_contract import StreamContract
from tests.support.brokers import (
    HOST,
    Tally,
    TcpProxy,
    TlsFiles,
    assert_no_task_leak,
    kafka_broker,
    start_tansu,
    task_census,
    tls_files,
)
from tests.support.handover import replace_under_load
from tests.support.services import free_port
from tests.support.waiting import eventually
from xresource.backends.streams.kafka import KafkaResource
from xresource.errors import XResourceConnectionError, XResourceError
from xresource.resource import State

__all__ = ["kafka_broker", "tls_files"]  # session fixtures, imported for pytest

# Fast group joins on tansu (it waits about half the session timeout) and short long-polls.
FAST_CONSUMER = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100, "fetch_max_wait_ms": 100}


def unique(prefix: str = "xr-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class KeyedFeed:
    """Produces with one key: one partition, so the order is kept (Kafka orders per partition)."""

    def __init__(self, publisher: KafkaResource) -> None:
        self.publisher = publisher

    async def emit(self, channel: str, payload: Any) -> None:
        await self.publisher.produce(channel, payload, key="contract")

    async def ready(self) -> None:
        await self.publisher.wait_ready(timeout=60)


class TestKafkaContract(StreamContract):
    resource_type = KafkaResource
    defaults: ClassVar[dict[str, Any]] = {
        "reconnect_interval": 0.05,
        "timeout": 5,
        "health_check_interval": 0.2,
        "consumer_config": FAST_CONSUMER,
    }
    tls_testable = False  # tansu 0.6 serves no TLS, and a TLS front cannot rewrite its metadata

    @pytest.fixture
    def server(self, kafka_broker: str) -> tuple[str, int]:
        host, port = kafka_broker.rsplit(":", 1)
        return (host, int(port))

    def address(self, server: tuple[str, int]) -> tuple[str, int]:
        return server

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        return {"bootstrap_servers": f"{host}:{port}"}

    @contextlib.asynccontextmanager
    async def feed(self, server: tuple[str, int]) -> AsyncIterator[KeyedFeed]:
        async with self.make(server) as publisher:
            assert isinstance(publisher, KafkaResource)
            yield KeyedFeed(publisher)

    @contextlib.asynccontextmanager
    async def proxied(self, server: Any) -> AsyncIterator[tuple[TcpProxy, dict[str, Any], Any]]:
        # Kafka clients connect where the metadata says: a private broker that names the proxy.
        proxy = TcpProxy(0)
        broker = start_tansu(advertised_port=proxy.port)
        proxy.target_port = broker.port
        await proxy.start()
        try:
            yield proxy, self.fields_for(HOST, proxy.port), (HOST, broker.port)
        finally:
            await proxy.cut()
            broker.stop()


def make(servers: str | list[str], **fields: Any) -> KafkaResource:
    fields.setdefault("reconnect_interval", 0.05)
    fields.setdefault("timeout", 5)
    fields.setdefault("health_check_interval", 0.2)
    fields.setdefault("consumer_config", dict(FAST_CONSUMER))
    return KafkaResource(name="orders", bootstrap_servers=servers, **fields)


async def test_round_trip_publish_produce_and_consume(kafka_broker: str) -> None:
    topic = unique()
    tally = Tally()
    async with make(kafka_broker) as stream:
        await stream.subscribe(topic, tally)  # returns once the partitions are assigned
        sent = await stream.produce(topic, {"id": 1}, key="customer-7")
        assert sent["topic"] == topic
        assert sent["offset"] >= 0
        await stream.publish(topic, [1, 2])
        await stream.publish(topic, "text")
        await tally.wait_for([{"id": 1}, [1, 2], "text"])

        records = stream.consume(topic)  # already subscribed: nothing to wait for
        first = asyncio.ensure_future(anext(records))
        await eventually(lambda: stream.stream_stats()["iterators"] == 1, what="consume() is listening")
        await stream.produce(topic, {"id": 2}, key=b"\xffbinary-key")
        record = await asyncio.wait_for(first, 10)
        await records.aclose()
        assert set(record) == {"topic", "partition", "offset", "key", "value", "timestamp"}
        assert record["value"] == {"id": 2}
        assert record["key"] == b"\xffbinary-key"
        assert isinstance(record["timestamp"], int)
        assert topic in stream.subscriptions  # consume() left the earlier subscription alone
        assert topic in await stream.list_collections_or_tables()
        assert await stream.validate_connection() is True


async def test_consume_subscribes_for_the_iteration_only(kafka_broker: str) -> None:
    topic = unique()
    async with make(kafka_broker) as stream:
        records = stream.consume([topic])

        async def produce_when_subscribed() -> None:
            # subscribe() inside consume() returns once the start offsets are known.
            await eventually(lambda: topic in stream.subscriptions and stream._rt.applied.get(topic) is not None)
            await stream.produce(topic, {"n": 1})

        producer = asyncio.create_task(produce_when_subscribed())
        record = await asyncio.wait_for(anext(records), 15)
        await producer
        assert record["value"] == {"n": 1}
        await records.aclose()
        assert topic not in stream.subscriptions


async def test_consumer_group_round_trip(kafka_broker: str) -> None:
    topic = unique()
    tally = Tally()
    async with make(kafka_broker, consumer_group=unique("group")) as stream:
        await stream.subscribe(topic, tally)
        assert stream._rt.consumer.assignment()
        await stream.produce(topic, {"grouped": True})
        await tally.wait_for([{"grouped": True}])


async def test_bad_input_is_refused(kafka_broker: str) -> None:
    for servers in ("", "no-port", "host:99999", ["h:1", "bad"]):
        with pytest.raises(ValidationError):
            KafkaResource(name="k", bootstrap_servers=servers)
    with pytest.raises(ValidationError, match="own fields"):
        KafkaResource(name="k", consumer_config={"group_id": "g"})
    with pytest.raises(ValidationError, match="reference"):
        KafkaResource(name="k", producer_config={"sasl_plain_password": "hunter2"})
    with pytest.raises(ValidationError, match="reference"):
        KafkaResource(name="k", password="hunter2")
    typo = make(kafka_broker, producer_config={"lingr_ms": 5})
    with pytest.raises(XResourceError, match="did you mean 'linger_ms'"):
        await typo.connect()
    async with make(kafka_broker) as stream:
        with pytest.raises(ValueError, match="invalid topic name"):
            await stream.subscribe("has space")
        with pytest.raises(ValueError, match="invalid topic name"):
            await stream.produce("x" * 300, 1)
        with pytest.raises(TypeError, match="no options"):
            await stream.subscribe("fine", pattern=True)
        assert stream.subscriptions == []
    assert make([kafka_broker, kafka_broker]).target() == f"{kafka_broker},{kafka_broker}"


async def test_unreachable_broker_fails_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("XR_KAFKA_PW", secret)
    stream = make(
        f"{HOST}:{free_port()}",
        security_protocol="SASL_PLAINTEXT",
        username="svc",
        password="${env:XR_KAFKA_PW}",
        timeout=2,
    )
    with pytest.raises(XResourceConnectionError) as caught:
        await stream.connect()
    assert stream.connection_state is State.FAILED
    for text in (str(caught.value), repr(stream), str(stream.get_metadata())):
        assert secret not in text


async def test_fault_restart_resumes_at_least_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xresource")
    server = start_tansu()
    try:
        servers = f"{HOST}:{server.port}"
        topic = unique()
        tally = Tally()
        async with make(servers, consumer_group=unique("group"), timeout=3) as stream:
            await stream.subscribe(topic, tally)
            await stream.produce(topic, {"before": 1})
            await tally.wait_for([{"before": 1}])
            tasks_before = task_census()

            server.kill()
            assert await stream.wait_for_state(State.RECONNECTING, timeout=15) is State.RECONNECTING
            assert stream.state is State.RECONNECTING
            server.start()
            await stream.wait_ready(timeout=30)
            assert stream.counters.reconnects == 1
            # One consumer again: the old one was stopped, the new one holds every partition.
            assert {tp.topic for tp in stream._rt.consumer.assignment()} == {topic}

            after = [{"after": n} for n in range(20)]
            await asyncio.gather(*(stream.produce(topic, item) for item in after))
            await tally.wait_for(after, timeout=15)
            # At least once: every record arrived; duplicates are possible in Kafka and counted.
            assert all(tally.seen(item) >= 1 for item in after)
            logging.getLogger("tests").info("kafka duplicates after reconnect: %d", tally.duplicates())
            assert stream.state_history[-3:] == [State.READY, State.RECONNECTING, State.READY]
            await assert_no_task_leak(tasks_before)
        assert "lost its connection" in caplog.text
        assert "reconnected" in caplog.text
    finally:
        server.stop()


async def test_ssl_uses_the_ca_file(kafka_broker: str) -> None:
    # tansu 0.6 cannot serve TLS, so only the client side is checked: the CA file is read.
    stream = make(kafka_broker, security_protocol="SSL", ca_file="/nonexistent/ca.pem")
    with pytest.raises(XResourceConnectionError, match=r"ca\.pem|No such file"):
        await stream.connect()


async def test_consumer_group_hand_over_commits_and_resumes(kafka_broker: str) -> None:
    topic, group = unique(), unique("group")
    async with make(kafka_broker) as publisher:
        figures = await replace_under_load(
            lambda: make(kafka_broker, consumer_group=group),
            lambda stream, handler: stream.subscribe(topic, handler),
            KeyedFeed(publisher),
            topic,
            replaces=5,
            rate=100,
        )
    logging.getLogger("tests.streams").warning("kafka consumer group: %s", figures)
    assert figures.lost == 0
    assert figures.delivered_twice == 0  # what was handled was committed before the old consumer left
    assert figures.in_order
