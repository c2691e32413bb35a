"""rabbitmq against the machine's RabbitMQ, in a private vhost with its own user.

RabbitMQ cannot be restarted privately, so faults are made two ways: the broker
cuts our connections (``rabbitmqctl close_all_connections --vhost``), and a TCP
proxy between us and the broker goes away for a real outage.
"""

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
    RabbitVhost,
    Tally,
    TcpProxy,
    TlsFiles,
    assert_no_task_leak,
    close_rabbitmq_connections,
    rabbitmq_vhost,
    task_census,
    tls_files,
)
from tests.support.handover import replace_under_load
from tests.support.stream_feeds import BrokerFeed
from tests.support.waiting import eventually
from xresource.backends.streams.rabbitmq import RabbitMQResource
from xresource.errors import XResourceAuthenticationError, XResourceTimeoutError
from xresource.resource import State

__all__ = ["rabbitmq_vhost", "tls_files"]  # session fixtures, imported for pytest

PASSWORD_ENV = "XR_RABBIT_PW"


@pytest.fixture
def vhost(rabbitmq_vhost: RabbitVhost, monkeypatch: pytest.MonkeyPatch) -> RabbitVhost:
    monkeypatch.setenv(PASSWORD_ENV, rabbitmq_vhost.password)
    return rabbitmq_vhost


def url_for(vhost: RabbitVhost, port: int = 5672) -> str:
    return f"amqp://{vhost.user}:${{env:{PASSWORD_ENV}}}@{HOST}:{port}/{vhost.vhost}"


def unique(prefix: str = "xr") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def make(url: str, **fields: Any) -> RabbitMQResource:
    fields.setdefault("reconnect_interval", 0.1)
    fields.setdefault("timeout", 5)
    return RabbitMQResource(name="jobs", connection_string=url, **fields)


class TestRabbitContract(StreamContract):
    resource_type = RabbitMQResource
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.1, "timeout": 5}

    @pytest.fixture
    def server(self, vhost: RabbitVhost) -> RabbitVhost:
        self.vhost = vhost
        return vhost

    def address(self, server: RabbitVhost) -> tuple[str, int]:
        return (HOST, 5672)

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        url = url_for(self.vhost, port).replace(f"@{HOST}:", f"@{host}:")
        if tls is None:
            return {"connection_string": url}
        return {"connection_string": url.replace("amqp://", "amqps://"), "ca_file": str(tls.ca)}

    @contextlib.asynccontextmanager
    async def feed(self, server: RabbitVhost) -> AsyncIterator[BrokerFeed]:
        async with self.make(server) as publisher:
            yield BrokerFeed(publisher)


@pytest.fixture
async def raw_channel(vhost: RabbitVhost) -> AsyncIterator[Any]:
    """A plain aio-pika channel for looking at queues from outside (robust: it outlives cuts)."""
    import aio_pika

    connection = await aio_pika.connect_robust(vhost.url(), reconnect_interval=0.1)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def consumers_on(raw_channel: Any, queue: str) -> int:
    declared = await raw_channel.declare_queue(queue, passive=True, robust=False)
    return int(declared.declaration_result.consumer_count)


async def test_round_trip_with_topic_wildcards(vhost: RabbitVhost) -> None:
    base = unique()
    tally = Tally()
    async with make(url_for(vhost)) as stream:
        await stream.subscribe(f"{base}.*.created", tally)
        async with stream.messages() as iterator:
            await stream.publish(f"{base}.order.created", {"id": 1})
            message = await asyncio.wait_for(anext(iterator), 5)
        assert message.channel == f"{base}.order.created"
        assert message.subscription == f"{base}.*.created"
        assert message.meta["content_type"] == "application/json"
        await stream.publish(f"{base}.order.deleted", {"id": 2})  # not bound: not received
        await stream.publish(f"{base}.user.created", "text")
        await stream.publish(f"{base}.user.created", b"\xff\x00")
        await tally.wait_for([{"id": 1}, "text"])
        await eventually(lambda: len(tally.items) == 3)
        assert tally.items[-1] == b"\xff\x00"  # not UTF-8: stays bytes
        assert tally.seen({"id": 2}) == 0
        assert await stream.validate_connection() is True


async def test_shared_queue_competing_consumers_and_declared_exchange(
    vhost: RabbitVhost, raw_channel: Any
) -> None:
    exchange, queue, key = unique("ex"), unique("work"), unique("job")
    first, second = Tally(), Tally()
    fields = {"exchange": exchange, "exchange_type": "direct", "prefetch_count": 1}
    async with make(url_for(vhost), **fields) as a, make(url_for(vhost), **fields) as b:
        await a.subscribe(key, first, queue=queue)
        await b.subscribe(key, second, queue=queue)
        assert await consumers_on(raw_channel, queue) == 2
        items = [{"n": n} for n in range(20)]
        for item in items:
            await a.publish(key, item)
        await eventually(lambda: len(first.items) + len(second.items) >= 20)
        await a.publish(key, {"last": True})
        await eventually(lambda: {"last": True} in first.items + second.items)
        assert len(first.items) + len(second.items) == 21  # each job went to exactly one consumer
        assert first.items
        assert second.items
        await a.unsubscribe(key)
        assert await consumers_on(raw_channel, queue) == 1  # the shared queue itself stays
    await raw_channel.queue_delete(queue)
    await raw_channel.exchange_delete(exchange)


async def test_default_exchange_routes_by_queue_name(vhost: RabbitVhost, raw_channel: Any) -> None:
    queue = unique("direct-q")
    tally = Tally()
    async with make(url_for(vhost), exchange="") as stream:
        await stream.subscribe(queue, tally)
        await stream.publish(queue, {"to": "queue"})
        await tally.wait_for([{"to": "queue"}])
        with pytest.raises(ValueError, match="queue name"):
            await stream.subscribe("a.*.wildcard")
    await raw_channel.queue_delete(queue)


async def test_private_queues_are_removed_at_disconnect(vhost: RabbitVhost, raw_channel: Any) -> None:
    import aiormq

    stream = make(url_for(vhost))
    async with stream:
        await stream.subscribe(unique())
        queue = stream.consumer_queue(stream.subscriptions[0])
        assert queue is not None
        assert await consumers_on(raw_channel, queue) == 1
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await consumers_on(raw_channel, queue)


async def test_bad_input_is_refused(vhost: RabbitVhost) -> None:
    with pytest.raises(ValidationError):
        RabbitMQResource(name="r", connection_string="http://h/")
    with pytest.raises(ValidationError, match="literal password"):
        RabbitMQResource(name="r", connection_string="amqp://guest:guest@127.0.0.1/")
    with pytest.raises(ValidationError):
        RabbitMQResource(name="r", exchange_type="round-robin")
    with pytest.raises(ValidationError):
        RabbitMQResource(name="r", prefetch_count=0)
    async with make(url_for(vhost)) as stream:
        with pytest.raises(TypeError, match="unknown option"):
            await stream.subscribe("k", durable=True)
        with pytest.raises(ValueError, match="queue must be"):
            await stream.subscribe("k", queue="bad name with spaces")
        with pytest.raises(ValueError, match="255"):
            await stream.subscribe("k" * 300)
        assert stream.subscriptions == []


async def test_wrong_password_is_an_authentication_error(
    vhost: RabbitVhost, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = secrets.token_urlsafe(16)
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    stream = make(url_for(vhost))
    with pytest.raises(XResourceAuthenticationError) as caught:
        await stream.connect()
    for text in (str(caught.value), repr(stream), str(stream.get_metadata())):
        assert wrong not in text
        assert vhost.password not in text


async def test_broker_closing_connections_restores_each_consumer_once(
    vhost: RabbitVhost, raw_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key, work_key, work_queue = unique(), unique(), unique("shared")
    on_key, on_work = Tally(), Tally()
    async with make(url_for(vhost)) as stream:
        await stream.subscribe(key, on_key)
        await stream.subscribe(work_key, on_work, queue=work_queue)
        private_queue = stream.consumer_queue(key)
        assert private_queue is not None
        await stream.publish(key, {"before": 1})
        await on_key.wait_for([{"before": 1}])
        tasks_before = task_census()

        # Watch before cutting: the robust connection may be back before rabbitmqctl returns.
        saw_reconnecting = asyncio.create_task(stream.wait_for_state(State.RECONNECTING, timeout=30))
        await asyncio.sleep(0)
        await asyncio.to_thread(close_rabbitmq_connections, vhost.vhost, "test")
        assert await saw_reconnecting is State.RECONNECTING
        await eventually(lambda: stream.counters.reconnects == 1, timeout=20)
        await stream.wait_ready(timeout=20)
        # aio-pika restored each consumer, on the same tag: one consumer per queue.
        assert await consumers_on(raw_channel, private_queue) == 1
        assert await consumers_on(raw_channel, work_queue) == 1

        after = [{"after": n} for n in range(20)]
        for item in after:
            await stream.publish(key, item)
            await stream.publish(work_key, item)
        await stream.publish(key, {"last": True})
        await on_key.wait_for([*after, {"last": True}])  # one queue keeps order: a duplicate comes first
        await on_work.wait_for(after)
        assert on_key.duplicates() == 0
        assert on_work.duplicates() == 0
        assert stream.state_history[-3:] == [State.READY, State.RECONNECTING, State.READY]
        await assert_no_task_leak(tasks_before)
    await raw_channel.queue_delete(work_queue)
    text = caplog.text + repr(stream) + str(stream.get_metadata())
    assert vhost.password not in text


async def test_outage_bounds_publish_then_recovers_or_fails(vhost: RabbitVhost) -> None:
    proxy = await TcpProxy(5672).start()
    key = unique()
    tally = Tally()
    try:
        async with make(
            url_for(vhost, proxy.port), timeout=1.0, max_reconnect_attempts=5, reconnect_interval=0.05
        ) as stream:
            await stream.subscribe(key, tally)
            await proxy.cut()
            await stream.wait_for_state(State.RECONNECTING, timeout=10)
            with pytest.raises(XResourceTimeoutError, match=r"not confirmed within 1\.0s"):
                await stream.publish(key, {"during": "outage"})  # bounded by timeout
            # A publish made during a short outage waits for the reconnect and goes out once.
            pending = asyncio.create_task(stream.publish(key, {"across": "outage"}))
            await eventually(lambda: stream._status.waiters, what="the publish waits for the reconnect")
            await proxy.start()
            await asyncio.wait_for(pending, 5)
            await stream.wait_ready(timeout=10)
            await stream.publish(key, {"after": "outage"})
            await tally.wait_for([{"across": "outage"}, {"after": "outage"}])
            assert tally.seen({"during": "outage"}) == 0

            # A longer outage than the budget: the resource gives up, and connect() recovers it.
            await proxy.cut()
            await stream.wait_for_state(State.FAILED, timeout=15)
            assert stream.state is State.FAILED
            assert "gave up" in (stream.last_error or "")
            await proxy.start()
            await stream.connect()
            await stream.publish(key, {"after": "failed"})
            await tally.wait_for([{"after": "failed"}])
            assert tally.duplicates() == 0
    finally:
        await proxy.cut()


async def test_shared_durable_queue_hand_over_loses_nothing(vhost: RabbitVhost, raw_channel: Any) -> None:
    key, queue = unique(), unique("durable")
    async with make(url_for(vhost)) as publisher:
        figures = await replace_under_load(
            lambda: make(url_for(vhost)),
            lambda stream, handler: stream.subscribe(key, handler, queue=queue),
            BrokerFeed(publisher),
            key,
            replaces=10,
            rate=100,
        )
    await raw_channel.queue_delete(queue)
    logging.getLogger("tests.streams").warning("rabbitmq shared queue: %s", figures)
    assert figures.lost == 0
    assert figures.delivered_twice == 0
