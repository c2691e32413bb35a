"""redis_pubsub against the machine's Redis, and a private redis-server for faults."""

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
    start_redis,
    task_census,
    tls_files,
)
from tests.support.services import free_port, require_service
from tests.support.stream_feeds import BrokerFeed
from tests.support.waiting import eventually
from xresource.backends.streams.redis_pubsub import RedisPubSubResource
from xresource.errors import XResourceAuthenticationError, XResourceConnectionError
from xresource.resource import State

SHARED_URL = "redis://127.0.0.1:6379/0"

__all__ = ["tls_files"]  # the session fixture, imported for pytest


@pytest.fixture
def shared_redis() -> str:
    require_service("Redis", HOST, 6379)
    return SHARED_URL


def unique(prefix: str = "xr-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def numsub(client: Any, *channels: str) -> dict[str, int]:
    pairs = await client.pubsub_numsub(*channels)
    return {name.decode(): count for name, count in pairs}


class TestRedisContract(StreamContract):
    resource_type = RedisPubSubResource
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.05, "timeout": 5}

    @pytest.fixture
    def server(self, shared_redis: str) -> tuple[str, int]:
        return (HOST, 6379)

    def address(self, server: tuple[str, int]) -> tuple[str, int]:
        return server

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        if tls is None:
            return {"connection_string": f"redis://{host}:{port}/0"}
        return {"connection_string": f"rediss://{host}:{port}/0", "ca_file": str(tls.ca)}

    @contextlib.asynccontextmanager
    async def feed(self, server: tuple[str, int]) -> AsyncIterator[BrokerFeed]:
        async with self.make(server) as publisher:
            yield BrokerFeed(publisher)


def make(url: str, **fields: Any) -> RedisPubSubResource:
    fields.setdefault("reconnect_interval", 0.05)
    return RedisPubSubResource(name="events", connection_string=url, **fields)


async def test_round_trip_json_text_and_bytes(shared_redis: str) -> None:
    channel = unique()
    tally = Tally()
    async with make(shared_redis) as stream:
        await stream.subscribe(channel, tally)
        async with stream.messages() as iterator:
            assert await stream.publish(channel, {"id": 1, "tags": ["a"]}) == 1
            assert await stream.publish(channel, [1, 2, 3]) == 1
            assert await stream.publish(channel, "plain words") == 1
            assert await stream.publish(channel, b"\xff\x00raw") == 1
            await tally.wait_for([{"id": 1, "tags": ["a"]}, [1, 2, 3], "plain words"])
            first = await asyncio.wait_for(anext(iterator), 5)
        assert first.channel == channel
        assert first.raw == b'{"id":1,"tags":["a"]}'
        await eventually(lambda: len(tally.items) == 4)
        assert tally.items[-1] == b"\xff\x00raw"
        assert await stream.validate_connection() is True
        assert channel in await stream.list_collections_or_tables()
        assert stream.stream_stats()["received"] == 4


async def test_pattern_subscription_names_its_pattern(shared_redis: str) -> None:
    base = unique()
    by_pattern = Tally()
    by_channel = Tally()
    async with make(shared_redis) as stream:
        await stream.subscribe(f"{base}.*", by_pattern, pattern=True)
        stream.on(f"{base}.one", by_channel)
        async with stream.messages() as iterator:
            await stream.publish(f"{base}.one", {"n": 1})
            message = await asyncio.wait_for(anext(iterator), 5)
        assert message.channel == f"{base}.one"
        assert message.subscription == f"{base}.*"
        await by_pattern.wait_for([{"n": 1}])
        await by_channel.wait_for([{"n": 1}])
        await stream.unsubscribe(f"{base}.*")
        # The server applies PUNSUBSCRIBE on its own connection, soon after.
        await eventually(lambda: _is(stream.publish(f"{base}.one", 2), 0), what="no receiver left")
        assert by_pattern.seen(2) == 0  # its handler went with the subscription


async def test_unsubscribe_leaves_no_subscriber(shared_redis: str) -> None:
    channel = unique()
    async with make(shared_redis) as stream:
        await stream.subscribe(channel)
        client = stream._rt.client
        await eventually(lambda: _is(numsub(client, channel), {channel: 1}))
        await stream.unsubscribe(channel)
        await eventually(lambda: _is(numsub(client, channel), {channel: 0}))
        assert stream.subscriptions == []


async def _is(probe: Any, expected: Any) -> bool:
    return bool(await probe == expected)


async def test_bad_input_is_refused(shared_redis: str) -> None:
    with pytest.raises(ValidationError, match="rediss"):
        RedisPubSubResource(name="r", connection_string="http://127.0.0.1:6379")
    with pytest.raises(ValidationError, match="literal password"):
        RedisPubSubResource(name="r", connection_string="redis://:hunter2@127.0.0.1:6379/0")
    with pytest.raises(ValidationError):
        RedisPubSubResource(name="r", timeout=0)
    async with make(shared_redis) as stream:
        with pytest.raises(TypeError, match="unknown option"):
            await stream.subscribe("c", patern=True)
        with pytest.raises(TypeError, match="True or False"):
            await stream.subscribe("c", pattern="yes")
        with pytest.raises(TypeError, match="JSON"):
            await stream.publish("c", object())
        assert stream.subscriptions == []


async def test_unreachable_server_fails_fast_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("XR_REDIS_PW", secret)
    stream = make(f"redis://:${{env:XR_REDIS_PW}}@127.0.0.1:{free_port()}/0", timeout=2)
    with pytest.raises(XResourceConnectionError) as caught:
        await stream.connect()
    assert stream.state is State.FAILED
    assert stream.connection_state is State.FAILED
    for text in (str(caught.value), repr(stream), str(stream.get_metadata()), str(stream.last_error)):
        assert secret not in text


async def test_fault_restart_restores_subscriptions_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = secrets.token_urlsafe(16)
    monkeypatch.setenv("XR_REDIS_PW", secret)
    caplog.set_level(logging.DEBUG)
    server = start_redis(password=secret)
    try:
        url = f"redis://:${{env:XR_REDIS_PW}}@127.0.0.1:{server.port}/0"
        exact, pattern = unique("orders"), unique("audit")
        on_exact, on_pattern = Tally(), Tally()
        async with make(url) as stream:
            await stream.subscribe(exact, on_exact)
            await stream.subscribe(f"{pattern}.*", on_pattern, pattern=True)
            await stream.publish(exact, {"before": 1})
            await on_exact.wait_for([{"before": 1}])
            tasks_before = task_census()

            server.kill()
            assert await stream.wait_for_state(State.RECONNECTING, timeout=10) is State.RECONNECTING
            assert stream.state is State.RECONNECTING
            server.start()
            await stream.wait_ready(timeout=15)
            assert stream.counters.reconnects == 1

            # Exactly one subscriber per channel and pattern, counted by the server.
            checker = stream._rt.client
            assert await numsub(checker, exact) == {exact: 1}
            assert await checker.pubsub_numpat() == 1
            after = [{"after": n} for n in range(20)]
            for item in after:
                assert await stream.publish(exact, item) == 1
                await stream.publish(f"{pattern}.x", item)
            await stream.publish(exact, {"last": True})
            await on_exact.wait_for([*after, {"last": True}])  # one connection keeps order:
            await on_pattern.wait_for(after)  # a duplicate would have come before the last one
            assert on_exact.duplicates() == 0
            assert on_pattern.duplicates() == 0
            assert stream.state_history[-3:] == [State.READY, State.RECONNECTING, State.READY]
            await assert_no_task_leak(tasks_before)
        text = caplog.text + repr(stream) + str(stream.get_metadata())
        assert secret not in text
    finally:
        server.stop()


async def test_wrong_password_is_an_authentication_error(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(16)
    server = start_redis(password=secret)
    try:
        monkeypatch.setenv("XR_REDIS_BAD_PW", "not-" + secret)
        stream = make(f"redis://:${{env:XR_REDIS_BAD_PW}}@127.0.0.1:{server.port}/0")
        with pytest.raises(XResourceAuthenticationError) as caught:
            await stream.connect()
        assert "not-" + secret not in str(caught.value)
        assert secret not in str(caught.value)
    finally:
        server.stop()


