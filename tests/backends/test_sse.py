"""sse against a real aiohttp event-stream server on loopback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest
from pydantic import ValidationError

from tests.backends.stream_contract import StreamContract
from tests.support import http_servers as hs
from tests.support.brokers import TlsFiles, tls_files
from tests.support.stream_feeds import SseFeedServer
from tests.support.waiting import eventually
from xresource.backends.streams.sse import SseResource
from xresource.errors import XResourceAuthenticationError, XResourceQueryError, XResourceRequestError
from xresource.resource import State

__all__ = ["tls_files"]  # the session fixture, imported for pytest


class TestSseContract(StreamContract):
    resource_type = SseResource
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.05, "timeout": 5}

    @pytest.fixture
    async def server(self) -> AsyncIterator[SseFeedServer]:
        feed = await SseFeedServer().start()
        yield feed
        await feed.stop()

    def address(self, server: SseFeedServer) -> tuple[str, int]:
        assert server.running is not None
        return (server.running.host, server.running.port)

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        if tls is None:
            return {"endpoint": f"http://{host}:{port}/events"}
        return {"endpoint": f"https://{host}:{port}/events", "ca_file": str(tls.ca)}

    @contextlib.asynccontextmanager
    async def feed(self, server: SseFeedServer) -> AsyncIterator[SseFeedServer]:
        yield server


@pytest.fixture
async def server():
    app, state = hs.sse_app()
    running = await hs.start_app(app)
    running.state = state  # type: ignore[attr-defined]
    yield running
    await running.stop()


@pytest.fixture
def state(server) -> hs.SseState:
    return server.state


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv("SSE_TOKEN", hs.BEARER_TOKEN)
    monkeypatch.setenv("SSE_KEY", hs.API_KEY)


def make(url: str, **fields) -> SseResource:
    fields.setdefault("reconnect_interval", 0.05)
    return SseResource(name="events", endpoint=f"{url}/events", **fields)


def numbers(payloads: list) -> list[int]:
    return [p["n"] for p in payloads]


async def test_event_names_dispatch(server, state):
    state.drops = 0
    got: dict[str, list] = {"message": [], "tick": [], "tock": []}
    async with make(server.url) as sse:
        for name in got:
            sse.on(name, got[name].append)
        await eventually(lambda: len(got["message"]) == 6)
    assert numbers(got["message"]) == [1, 2, 3, 4, 5, 6]
    assert numbers(got["tick"]) == [1, 3, 5]
    assert numbers(got["tock"]) == [2, 4, 6]
    assert sse.last_event_id == "6"


async def test_subscribe_is_an_event_filter(server, state):
    state.drops = 0
    ticks: list = []
    async with make(server.url) as sse:
        await sse.subscribe("tick", ticks.append)
        await eventually(lambda: len(ticks) == 3)
        assert sse.subscriptions == ["tick"]
    assert numbers(ticks) == [1, 3, 5]


async def test_messages_iterator_carries_ids(server, state):
    state.drops = 0
    sse = make(server.url)
    iterator = sse.messages()
    async with sse:
        received = []
        async for message in iterator:
            received.append(message)
            if len(received) == 6:
                break
        await iterator.aclose()
    assert [m.meta["id"] for m in received] == ["1", "2", "3", "4", "5", "6"]
    assert [m.event for m in received] == ["tick", "tock"] * 3
    assert received[0].raw == '{"n": 1}'


@pytest.mark.parametrize("abort", [False, True], ids=["stream-ends", "tcp-cut"])
async def test_resumes_with_last_event_id_without_gaps_or_duplicates(server, state, abort):
    state.abort = abort
    got: list = []
    async with make(server.url) as sse:
        sse.on("message", got.append)
        await eventually(lambda: len(got) == 6)  # the server sends events 1..6 only
        assert sse.counters.reconnects == 1
        assert sse.connection_state is State.READY
    assert numbers(got) == [1, 2, 3, 4, 5, 6]
    assert state.last_event_ids == [None, "3"]
    assert state.errors == []


async def test_resumes_again_and_again(server, state):
    state.per_connection, state.drops, state.total = 2, 3, 9
    got: list = []
    async with make(server.url) as sse:
        sse.on("message", got.append)
        await eventually(lambda: len(got) == 9)
        assert sse.state_history.count(State.RECONNECTING) == 3
    assert numbers(got) == list(range(1, 10))
    assert state.last_event_ids == [None, "2", "4", "6"]
    assert state.errors == []


async def test_server_retry_field_sets_the_reconnect_delay(server, state):
    state.retry_ms = 100
    got: list = []
    # reconnect_interval alone would wait 15-30 s; the server's retry: 100 ms wins.
    async with make(server.url, reconnect_interval=30) as sse:
        sse.on("message", got.append)
        await eventually(lambda: len(got) == 6, timeout=10)  # long before the 15-30 s of reconnect_interval
    assert state.last_event_ids == [None, "3"]


async def test_idle_timeout_reconnects_a_silent_stream(server, state):
    state.drops, state.total = 0, 3  # then silence, connection left open
    got: list = []
    async with make(server.url, idle_timeout=0.3) as sse:
        sse.on("message", got.append)
        await eventually(lambda: len(state.last_event_ids) == 2)
    assert numbers(got) == [1, 2, 3]
    assert state.last_event_ids == [None, "3"]


async def test_non_ascii_event_ids_resume(server, state):
    state.unicode_ids, state.per_connection, state.total, state.retry_ms = True, 0, 0, 20
    state.drops = 1  # the first connection sends only the id record, then ends
    async with make(server.url) as sse:
        await eventually(lambda: len(state.last_event_ids) >= 2)
        assert await sse.validate_connection() is True
    assert state.last_event_ids[:2] == [None, "été-0"]


async def test_comments_and_bare_records_are_not_dispatched(server, state):
    state.drops = 0
    state.extra = [": keep-alive\n\n", "id: 0\n\n", "event: ping\ndata:\n\n"]
    got: dict[str, list] = {"message": [], "ping": []}
    async with make(server.url) as sse:
        for name in got:
            sse.on(name, got[name].append)
        await eventually(lambda: len(got["message"]) == 7)
    assert got["ping"] == [""]  # a named event counts even with empty data
    assert got["message"][0] == ""
    assert numbers(got["message"][1:]) == [1, 2, 3, 4, 5, 6]


async def test_headers_and_auth_reach_the_server(server, state, caplog):
    caplog.set_level(logging.DEBUG)
    state.drops = 0
    sse = make(server.url, headers={"X-Client": "xr"}, auth={"bearer_token": "${env:SSE_TOKEN}"})
    async with sse:
        await eventually(lambda: sse.last_event_id == "6")
        outputs = [repr(sse), str(sse.get_metadata()), sse.model_dump_json()]
    headers = state.headers[0]
    assert headers["Authorization"] == f"Bearer {hs.BEARER_TOKEN}"
    assert headers["X-Client"] == "xr"
    assert headers["Accept"] == "text/event-stream"
    for text in [*outputs, caplog.text]:
        assert hs.BEARER_TOKEN not in text


async def test_api_key_query_never_reaches_the_log(server, state, caplog):
    caplog.set_level(logging.DEBUG)
    state.drops = 0
    async with make(server.url, auth={"api_key": "${env:SSE_KEY}", "api_key_query": "key"}) as sse:
        await eventually(lambda: sse.last_event_id == "6")
    assert "HTTP Request" in caplog.text  # httpx did log the request line
    for form in (hs.API_KEY, quote(hs.API_KEY, safe=""), quote_plus(hs.API_KEY)):
        assert form not in caplog.text


async def test_rejected_stream_errors(server, state):
    state.status = 401
    with pytest.raises(XResourceAuthenticationError) as info:
        await make(server.url, auth={"api_key": "${env:SSE_KEY}", "api_key_query": "key"}).connect()
    assert info.value.status == 401  # type: ignore[attr-defined]
    assert "key=***" in str(info.value)
    assert hs.API_KEY not in str(info.value)
    state.status = 404
    with pytest.raises(XResourceQueryError) as info2:  # a 4xx: the request is wrong, no retry helps
        await make(server.url).connect()
    assert info2.value.status == 404
    assert not isinstance(info2.value, XResourceAuthenticationError)


async def test_not_an_event_stream(server):
    bad = SseResource(name="events", endpoint=f"{server.url}/nope")
    with pytest.raises(XResourceQueryError):
        await bad.connect()
    app, _ = hs.rest_app()
    rest = await hs.start_app(app)
    try:
        with pytest.raises(XResourceRequestError, match="not an event stream"):
            await SseResource(name="events", endpoint=f"{rest.url}/echo").connect()
    finally:
        await rest.stop()


async def test_gives_up_after_max_reconnect_attempts(server, state):
    async with make(server.url, reconnect_interval=0.01, max_reconnect_attempts=2) as sse:
        state.status = 503
        await sse.wait_for_state(State.FAILED, timeout=5)
        assert sse.state is State.FAILED
        assert "503" in (sse.last_error or "")


async def test_publish_is_refused(server, state):
    state.drops = 0
    async with make(server.url) as sse:
        with pytest.raises(NotImplementedError, match="one way"):
            await sse.publish("x", {"a": 1})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint": "ws://h/events"}, "should match pattern"),
        ({"endpoint": "http://u:pw@h/events"}, "literal password"),
        ({"endpoint": "http://h", "headers": {"Authorization": "Bearer x"}}, "literal"),
        ({"endpoint": "http://h", "idle_timeout": 0}, "greater than 0"),
    ],
)
def test_bad_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        SseResource(name="events", **fields)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return hs.make_certificate(tmp_path_factory.mktemp("tls"))


