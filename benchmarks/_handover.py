"""Reload hand-over under load, per stream type: messages lost and duplicated per replace.

Each type is replaced ``REPLACES`` times while a publisher sends ``{"n": i}`` at
``RATE`` messages per second (see ``tests/support/handover.py``); the row gives
the messages lost per replace (target 0; Redis Pub/Sub and WebSocket have no
server-side replay, so there the figure is what the overlap achieved), and the
note the duplicates: received by both instances and handed over once
("caught"), and handed over twice (target 0).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from benchmarks._report import Row
from tests.support.handover import Collector, replace_under_load
from tests.support.services import port_open
from tests.support.stream_feeds import BrokerFeed, Feed, SseFeedServer, WsFeedServer
from xresource.backends.streams._base import EventStreamResource

HOST = "127.0.0.1"
REPLACES = 20
RATE = 200.0
FAST = {"reconnect_interval": 0.05, "timeout": 5}


@contextlib.asynccontextmanager
async def _broker(make: Callable[[], EventStreamResource]) -> AsyncIterator[Feed]:
    async with make() as publisher:
        yield BrokerFeed(publisher)


async def _measure(
    name: str, make: Callable[[], EventStreamResource], feed: Feed, unwrap: Callable[[Any], Any] | None = None
) -> Row:
    channel = f"bench-handover-{uuid.uuid4().hex[:8]}"

    async def subscribe(stream: EventStreamResource, handler: Collector) -> None:
        await stream.subscribe(channel, handler)

    figures = await replace_under_load(
        make,
        subscribe,
        feed,
        channel,
        replaces=REPLACES,
        rate=RATE,
        collector=Collector(unwrap or (lambda data: data)),
        expect_all=False,
    )
    return Row(
        figure=f"{name}: lost per replace, {REPLACES} replaces at {RATE:g} msg/s",
        value=figures.lost / REPLACES,
        baseline=None,
        ratio=None,
        unit="msg",
        target="0",
        ok=figures.lost == 0 and figures.delivered_twice == 0,
        note=(
            f"{figures.sent} sent, {figures.lost} lost; duplicates caught "
            f"{figures.duplicates_caught / REPLACES:.2f}/replace, handed over twice {figures.delivered_twice}"
        ),
    )


async def rows(kafka_servers: str | None) -> list[Row]:
    from xresource.backends.streams.kafka import KafkaResource
    from xresource.backends.streams.mqtt import MqttResource
    from xresource.backends.streams.rabbitmq import RabbitMQResource
    from xresource.backends.streams.redis_pubsub import RedisPubSubResource
    from xresource.backends.streams.sse import SseResource
    from xresource.backends.streams.websocket import WebSocketResource

    found: list[Row] = []
    makers: list[tuple[str, Callable[[], EventStreamResource]]] = []
    if port_open(HOST, 6379):
        makers.append(
            (
                "redis_pubsub",
                lambda: RedisPubSubResource(name="b", connection_string=f"redis://{HOST}:6379/0", **FAST),
            )
        )
    if port_open(HOST, 1883):
        makers.append(
            (
                "mqtt qos 1",
                lambda: MqttResource(name="b", connection_string=f"mqtt://{HOST}:1883", qos=1, **FAST),
            )
        )
    if port_open(HOST, 5672):
        password = os.environ.get("XR_BENCH_RABBIT_PASSWORD", "guest")
        os.environ.setdefault("XR_BENCH_RABBIT_PASSWORD", password)
        url = f"amqp://guest:${{env:XR_BENCH_RABBIT_PASSWORD}}@{HOST}:5672/"
        makers.append(("rabbitmq", lambda: RabbitMQResource(name="b", connection_string=url, **FAST)))
    if kafka_servers:
        consumer = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100, "fetch_max_wait_ms": 100}
        makers.append(
            (
                "kafka",
                lambda: KafkaResource(
                    name="b", bootstrap_servers=kafka_servers, consumer_config=consumer, **FAST
                ),
            )
        )
    for name, make in makers:
        async with _broker(make) as feed:
            found.append(await _measure(name, make, feed))
    ws = await WsFeedServer().start()
    try:
        found.append(
            await _measure(
                "websocket",
                lambda: WebSocketResource(name="b", endpoint=ws.url, **FAST),
                ws,
                lambda data: data.get("data") if isinstance(data, dict) else data,
            )
        )
    finally:
        await ws.stop()
    sse = await SseFeedServer().start()
    try:
        found.append(
            await _measure("sse with ids", lambda: SseResource(name="b", endpoint=sse.url, **FAST), sse)
        )
    finally:
        await sse.stop()
    return found
