"""mqtt against the machine's Mosquitto, and a private mosquitto for faults."""

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
    TlsFiles,
    assert_no_task_leak,
    start_mosquitto,
    task_census,
    tls_files,
)
from tests.support.handover import replace_under_load
from tests.support.services import free_port, require_service
from tests.support.stream_feeds import BrokerFeed
from tests.support.waiting import eventually
from xresource.backends.streams.mqtt import MqttResource, topic_filter_problem, topic_matches
from xresource.errors import XResourceConnectionError
from xresource.resource import State

__all__ = ["tls_files"]  # the session fixture, imported for pytest


@pytest.fixture
def shared_mqtt() -> str:
    require_service("Mosquitto", HOST, 1883)
    return f"mqtt://{HOST}:1883"


def unique(prefix: str = "xr-test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


class TestMqttContract(StreamContract):
    resource_type = MqttResource
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.05, "timeout": 5, "qos": 1, "keepalive": 5}
    block_is_lossless = False  # paho hands messages over in a socket callback that cannot wait

    @pytest.fixture
    def server(self, shared_mqtt: str) -> tuple[str, int]:
        return (HOST, 1883)

    def address(self, server: tuple[str, int]) -> tuple[str, int]:
        return server

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        if tls is None:
            return {"connection_string": f"mqtt://{host}:{port}"}
        return {"connection_string": f"mqtts://{host}:{port}", "ca_file": str(tls.ca)}

    @contextlib.asynccontextmanager
    async def feed(self, server: tuple[str, int]) -> AsyncIterator[BrokerFeed]:
        async with self.make(server) as publisher:
            yield BrokerFeed(publisher)


class TestMqtt5Contract(TestMqttContract):
    """The same contract over MQTT 5 (clean start, session expiry, reason codes)."""

    defaults: ClassVar[dict[str, Any]] = {**TestMqttContract.defaults, "protocol": "5"}


def make(url: str, **fields: Any) -> MqttResource:
    fields.setdefault("reconnect_interval", 0.05)
    fields.setdefault("timeout", 5)
    return MqttResource(name="sensors", connection_string=url, **fields)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("+/b", "a/b", True),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
        ("$share/g/a/+", "a/x", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+", "x\x00y"])
def test_bad_topic_filters_are_named(bad: str) -> None:
    assert topic_filter_problem(bad)


async def test_round_trip_with_wildcards_and_qos(shared_mqtt: str) -> None:
    base = unique()
    exact, wild = Tally(), Tally()
    async with make(shared_mqtt, qos=1) as stream:
        await stream.subscribe(f"{base}/exact", exact)
        await stream.subscribe(f"{base}/room/+/temp", wild, qos=0)
        async with stream.messages() as iterator:
            await stream.publish(f"{base}/exact", {"v": 1})
            first = await asyncio.wait_for(anext(iterator), 5)
            await stream.publish(f"{base}/room/7/temp", 21.5, qos=0)
            second = await asyncio.wait_for(anext(iterator), 5)
        assert (first.channel, first.data, first.meta["qos"]) == (f"{base}/exact", {"v": 1}, 1)
        assert first.subscription is None
        assert (second.channel, second.data, second.subscription) == (
            f"{base}/room/7/temp",
            21.5,
            f"{base}/room/+/temp",
        )
        await exact.wait_for([{"v": 1}])
        await wild.wait_for([21.5])
        await stream.publish(f"{base}/exact", "text")
        await stream.publish(f"{base}/exact", [1, 2])
        await exact.wait_for(["text", [1, 2]])
        await stream.unsubscribe(f"{base}/exact")
        assert stream.subscriptions == [f"{base}/room/+/temp"]
        assert await stream.validate_connection() is True


async def test_bad_input_is_refused(shared_mqtt: str) -> None:
    with pytest.raises(ValidationError):
        MqttResource(name="m", connection_string="tcp://127.0.0.1:1883")
    with pytest.raises(ValidationError, match="literal password"):
        MqttResource(name="m", connection_string="mqtt://u:hunter2@127.0.0.1:1883")
    with pytest.raises(ValidationError, match="reference"):
        MqttResource(name="m", password="hunter2")
    with pytest.raises(ValidationError):
        MqttResource(name="m", qos=3)
    async with make(shared_mqtt) as stream:
        with pytest.raises(ValueError, match="invalid topic filter"):
            await stream.subscribe("a/#/b")
        with pytest.raises(ValueError, match="qos must be"):
            await stream.subscribe("a/b", qos=5)
        with pytest.raises(TypeError, match="unknown option"):
            await stream.subscribe("a/b", retain=True)
        with pytest.raises(ValueError, match="no wildcards"):
            await stream.publish("a/+", 1)
        assert stream.subscriptions == []


async def test_unreachable_broker_fails_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("XR_MQTT_PW", secret)
    stream = make(f"mqtt://{HOST}:{free_port()}", username="probe", password="${env:XR_MQTT_PW}")
    with pytest.raises(XResourceConnectionError) as caught:
        await stream.connect()
    assert stream.connection_state is State.FAILED
    for text in (str(caught.value), repr(stream), str(stream.get_metadata())):
        assert secret not in text


async def test_fault_restart_resubscribes_every_topic_with_its_qos(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("XR_MQTT_PW", secret)
    caplog.set_level(logging.DEBUG)
    with start_mosquitto() as server:
        url = f"mqtt://{HOST}:{server.port}"
        base = unique()
        on_q1, on_wild = Tally(), Tally()
        # The anonymous broker ignores the credentials; they are here to be kept out of logs.
        async with make(url, username="device", password="${env:XR_MQTT_PW}", keepalive=5) as stream:
            await stream.subscribe(f"{base}/q1", on_q1, qos=1)
            await stream.subscribe(f"{base}/w/#", on_wild)
            await stream.publish(f"{base}/q1", {"before": True})
            await on_q1.wait_for([{"before": True}])
            tasks_before = task_census()

            server.kill()
            assert await stream.wait_for_state(State.RECONNECTING, timeout=10) is State.RECONNECTING
            server.start()
            await stream.wait_ready(timeout=15)
            assert stream.counters.reconnects == 1

            async with stream.messages() as iterator:
                await stream.publish(f"{base}/q1", {"after": -1}, qos=1)
                message = await asyncio.wait_for(anext(iterator), 5)
            assert message.meta["qos"] == 1  # the subscription came back with QoS 1, not 0

            after = [{"after": n} for n in range(20)]
            for item in after:
                await stream.publish(f"{base}/q1", item, qos=1)
                await stream.publish(f"{base}/w/deep/x", item)
            await stream.publish(f"{base}/q1", {"last": True}, qos=1)
            await on_q1.wait_for([*after, {"last": True}])  # in order: a duplicate would come first
            await on_wild.wait_for(after)
            assert on_q1.duplicates() == 0
            assert on_wild.duplicates() == 0
            assert stream.state_history[-3:] == [State.READY, State.RECONNECTING, State.READY]
            await assert_no_task_leak(tasks_before)
        text = caplog.text + repr(stream) + str(stream.get_metadata())
        assert secret not in text


async def test_a_retained_message_reaches_the_handler_given_to_subscribe(shared_mqtt: str) -> None:
    topic = unique()
    tally = Tally()
    async with make(shared_mqtt) as stream:
        await stream.publish(topic, {"retained": True}, qos=1, retain=True)
        try:
            # The broker sends it right after the SUBACK, maybe before subscribe() returns.
            await stream.subscribe(topic, tally, qos=1)
            await tally.wait_for([{"retained": True}])
        finally:
            await stream.publish(topic, b"", qos=1, retain=True)  # clear it again


async def test_persistent_session_moves_to_the_new_instance(shared_mqtt: str) -> None:
    topic, client_id = unique(), f"xr-test-{uuid.uuid4().hex[:10]}"

    def persistent() -> MqttResource:
        return make(shared_mqtt, client_id=client_id, clean_session=False, qos=1)

    async with make(shared_mqtt, qos=1) as publisher:
        figures = await replace_under_load(
            persistent,
            lambda stream, handler: stream.subscribe(topic, handler, qos=1),
            BrokerFeed(publisher),
            topic,
            replaces=10,
            rate=100,
        )
    async with make(shared_mqtt, client_id=client_id, clean_session=True):
        pass  # a clean session with the same id drops the broker's copy
    logging.getLogger("tests.streams").warning("mqtt persistent session: %s", figures)
    assert figures.lost == 0
    assert figures.delivered_twice == 0


async def test_a_second_holder_of_a_client_id_waits_for_the_hand_over(shared_mqtt: str) -> None:
    client_id = f"xr-test-{uuid.uuid4().hex[:10]}"
    first = make(shared_mqtt, client_id=client_id, clean_session=False, qos=1)
    second = make(shared_mqtt, client_id=client_id, clean_session=False, qos=1)
    try:
        await first.connect()
        await second.connect()  # the id is busy: a temporary one, no kicking each other off
        assert second._rt is not None
        assert second._rt.staged
        assert first.connection_state is State.READY
        await second.take_over(first)
        assert not second._rt.staged
        assert second._rt.client.identifier == client_id
    finally:
        await second.disconnect()
        await first.disconnect()
        async with make(shared_mqtt, client_id=client_id, clean_session=True):
            pass


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_persistent_session_keeps_what_arrives_while_away(shared_mqtt: str, protocol: str) -> None:
    client_id, topic = f"xr-test-{uuid.uuid4().hex[:10]}", unique()
    away = make(shared_mqtt, client_id=client_id, clean_session=False, qos=1, protocol=protocol)
    got: list[Any] = []
    try:
        async with away:
            await away.subscribe(topic)
        async with make(shared_mqtt, qos=1) as publisher:
            await publisher.publish(topic, {"while": "away"})
        back = make(shared_mqtt, client_id=client_id, clean_session=False, qos=1, protocol=protocol)
        back.on(topic, got.append)
        async with back:
            await back.subscribe(topic)
            await eventually(lambda: got == [{"while": "away"}], what="the message queued for the session")
    finally:
        async with make(shared_mqtt, client_id=client_id, clean_session=True, protocol=protocol):
            pass  # the broker forgets the session
