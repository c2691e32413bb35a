"""websocket against a real aiohttp WebSocket server on loopback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from tests.backends.stream_contract import StreamContract
from tests.support import http_servers as hs
from tests.support.brokers import TlsFiles, tls_files
from tests.support.stream_feeds import WsFeedServer
from tests.support.waiting import eventually
from xresource._transport import signing
from xresource.backends.streams.websocket import WebSocketResource
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceQueryError,
    XResourceTimeoutError,
)
from xresource.resource import State

__all__ = ["tls_files"]  # the session fixture, imported for pytest


class TestWebSocketContract(StreamContract):
    resource_type = WebSocketResource
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.05, "timeout": 5}
    lossless = False  # no ids and no replay: the splice is measured, not guaranteed
    bad_option = None  # extra subscribe() options go into the subscribe message

    @pytest.fixture
    async def server(self) -> AsyncIterator[WsFeedServer]:
        feed = await WsFeedServer().start()
        self.feed_server = feed
        yield feed
        await feed.stop()

    def address(self, server: WsFeedServer) -> tuple[str, int]:
        assert server.running is not None
        return (server.running.host, server.running.port)

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        if tls is None:
            return {"endpoint": f"ws://{host}:{port}/ws"}
        return {"endpoint": f"wss://{host}:{port}/ws", "ca_file": str(tls.ca)}

    @contextlib.asynccontextmanager
    async def feed(self, server: WsFeedServer) -> AsyncIterator[WsFeedServer]:
        yield server

    def unwrap(self, data: Any) -> Any:
        return data.get("data") if isinstance(data, dict) else data

    async def routed(self, channel: str) -> None:
        # Subscribing is a message with no answer: wait until the server has it.
        await eventually(lambda: self.feed_server.subscribers(channel) >= 1, what="subscribed")


@pytest.fixture
async def server():
    app, state = hs.ws_app()
    running = await hs.start_app(app)
    running.state = state  # type: ignore[attr-defined]
    running.app = app  # type: ignore[attr-defined]
    yield running
    await running.stop()


@pytest.fixture
def state(server) -> hs.WsState:
    return server.state


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv("WS_TOKEN", hs.BEARER_TOKEN)
    monkeypatch.setenv("WS_KEY", hs.API_KEY)


def make(url: str, **fields) -> WebSocketResource:
    fields.setdefault("reconnect_interval", 0.05)
    return WebSocketResource(name="feed", endpoint=url.replace("http", "ws", 1) + "/ws", **fields)


async def marker(ws: WebSocketResource, state: hs.WsState, tag: str) -> None:
    """Send a marker and wait until the server has it: everything sent before it has arrived."""
    await ws.send({"marker": tag})
    await eventually(lambda: any(m == {"marker": tag} for c in state.connections for m in c.received))


async def test_typed_events_dispatch(server, state):
    got: dict[str, list] = {"message": [], "price": [], "trade": [], "btc": []}
    async with make(server.url) as ws:
        for name in ("message", "price", "trade"):
            ws.on(name, got[name].append)
        await ws.subscribe("btc", got["btc"].append)
        await eventually(lambda: state.live and state.live[0].subscribes() == ["btc"])
        await state.broadcast({"type": "price", "channel": "btc", "value": 1})
        await state.broadcast({"type": "trade", "value": 2})
        await state.broadcast("not json")
        await state.broadcast(b"\x00\xffbinary")
        await eventually(lambda: len(got["message"]) == 5)
    assert got["message"][0] == {"type": "subscribed", "channel": "btc"}
    assert got["message"][1:] == [
        {"type": "price", "channel": "btc", "value": 1},
        {"type": "trade", "value": 2},
        "not json",
        b"\x00\xffbinary",
    ]
    assert got["price"] == [{"type": "price", "channel": "btc", "value": 1}]
    assert got["trade"] == [{"type": "trade", "value": 2}]
    assert got["btc"] == [
        {"type": "subscribed", "channel": "btc"},
        {"type": "price", "channel": "btc", "value": 1},
    ]


async def test_send_text_bytes_and_json(server, state):
    async with make(server.url) as ws:
        await ws.send("plain")
        await ws.send(b"\x01\x02")
        await ws.send(bytearray(b"\x03"))
        await ws.send({"a": [1, 2]})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await ws.send({"bad": float("nan")})
        await ws.publish("orders", {"id": 7})
        await eventually(lambda: len(state.connections[0].received) == 5)
    assert state.connections[0].received == [
        "plain",
        b"\x01\x02",
        b"\x03",
        {"a": [1, 2]},
        {"channel": "orders", "data": {"id": 7}},
    ]


async def test_subscribe_is_resent_once_per_connection_after_a_drop(server, state):
    async with make(server.url) as ws:
        await ws.subscribe("btc")
        await ws.subscribe("eth", symbol="ETH")
        await marker(ws, state, "first")
        await state.drop()
        await ws.wait_for_state(State.RECONNECTING, timeout=10)
        await eventually(lambda: ws.connection_state is State.READY)
        await marker(ws, state, "second")
        await state.drop()
        await eventually(lambda: len(state.connections) == 3 and ws.connection_state is State.READY)
        await marker(ws, state, "third")
        assert ws.counters.reconnects == 2
        assert ws.stream_stats()["connection_state"] == "ready"
    assert len(state.connections) == 3
    for conn in state.connections:
        assert conn.subscribes() == ["btc", "eth"]  # exactly one each, per connection
        assert {"action": "subscribe", "channel": "eth", "symbol": "ETH"} in conn.received


async def test_unsubscribe_is_sent_and_not_restored(server, state):
    async with make(server.url) as ws:
        await ws.subscribe("btc")
        await ws.subscribe("eth")
        await ws.unsubscribe("btc")
        await marker(ws, state, "first")
        assert {"action": "unsubscribe", "channel": "btc"} in state.connections[0].received
        await state.drop()
        await eventually(lambda: len(state.connections) == 2 and ws.connection_state is State.READY)
        await marker(ws, state, "second")
    assert state.connections[1].subscribes() == ["eth"]
    assert ws.subscriptions == ["btc", "eth"][1:]


async def test_send_while_reconnecting_waits_then_times_out(server, state):
    async with make(server.url, reconnect_interval=0.05, max_reconnect_attempts=100, timeout=0.3) as ws:
        await server.stop()
        await ws.wait_for_state(State.RECONNECTING, timeout=10)
        with pytest.raises(XResourceTimeoutError, match="nothing was sent"):
            await ws.send("lost?")
        restarted = await hs.start_app(server.app, port=server.port)
        try:
            # The backoff may have grown during the outage: wait for the reconnect, then send.
            await ws.wait_ready(timeout=10)
            await ws.send("after restart")
            await eventually(lambda: "after restart" in state.connections[-1].received)
        finally:
            await restarted.stop()


async def test_handshake_auth_headers_protocols_and_open_messages(server, state, caplog):
    caplog.set_level(logging.DEBUG)
    ws = make(
        server.url,
        protocols=["v1.json"],
        headers={"X-Client": "xr"},
        auth={"bearer_token": "${env:WS_TOKEN}"},
        open_messages=[{"action": "login", "token": "${env:WS_TOKEN}"}],
    )
    async with ws:
        await marker(ws, state, "m")
        assert ws.get_metadata()["subprotocol"] == "v1.json"
        outputs = [repr(ws), str(ws.get_metadata()), ws.model_dump_json()]
    conn = state.connections[0]
    assert conn.headers["Authorization"] == f"Bearer {hs.BEARER_TOKEN}"
    assert conn.headers["X-Client"] == "xr"
    assert conn.protocol == "v1.json"
    assert conn.received[0] == {"action": "login", "token": hs.BEARER_TOKEN}
    assert "Authorization: Bearer ***" in caplog.text  # the driver's own handshake log, scrubbed
    for text in [*outputs, caplog.text]:
        assert hs.BEARER_TOKEN not in text


async def test_hmac_signed_handshake_and_validate_connection(server, state):
    async with make(server.url, auth={"hmac_secret": "${env:WS_TOKEN}", "key_id": "k7"}) as ws:
        assert await ws.validate_connection() is True  # a ping round trip
        assert await ws.list_collections_or_tables() == []
    headers = state.connections[0].headers
    assert headers["X-Key-Id"] == "k7"
    assert signing.verify(hs.BEARER_TOKEN, "GET", "/ws", headers["X-Timestamp"], b"", headers["X-Signature"])


async def test_api_key_in_query(server, state):
    async with make(server.url, auth={"api_key": "${env:WS_KEY}", "api_key_query": "key"}) as ws:
        await marker(ws, state, "m")
    assert state.connections[0].query["key"] == hs.API_KEY


async def test_channel_names_cannot_inject_references(server, state):
    async with make(server.url) as ws:
        await ws.subscribe("${env:WS_TOKEN}")
        await marker(ws, state, "m")
    assert state.connections[0].subscribes() == ["${env:WS_TOKEN}"]


async def test_custom_templates_and_local_subscriptions(server, state):
    fields = {
        "subscribe_message": {"op": "sub", "args": ["{channel}"], "topic": "feed.{channel}"},
        "unsubscribe_message": None,
        "publish_message": {"op": "pub", "to": "{channel}", "payload": "{data}"},
    }
    async with make(server.url, **fields) as ws:
        await ws.subscribe("x")
        await ws.unsubscribe("x")
        await ws.publish("y", [1, 2])
        await marker(ws, state, "m")
    assert state.connections[0].received[:2] == [
        {"op": "sub", "args": ["x"], "topic": "feed.x"},
        {"op": "pub", "to": "y", "payload": [1, 2]},
    ]
    async with make(server.url, publish_message=None) as ws:
        with pytest.raises(NotImplementedError, match="send"):
            await ws.publish("y", 1)


async def test_rejected_handshake_is_an_auth_error_with_status(server, state, monkeypatch):
    state.reject_status = 401
    ws = make(server.url, auth={"api_key": "${env:WS_KEY}", "api_key_query": "key"})
    with pytest.raises(XResourceAuthenticationError) as info:
        await ws.connect()
    assert info.value.status == 401  # type: ignore[attr-defined]
    assert "key=***" in str(info.value)
    assert hs.API_KEY not in str(info.value)
    state.reject_status = 404
    with pytest.raises(XResourceQueryError) as info2:  # a 4xx: the request is wrong, no retry helps
        await make(server.url).connect()
    assert info2.value.status == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint": "http://h/ws"}, "should match pattern"),
        ({"endpoint": "ws://u:pw@h/ws"}, "literal password"),
        ({"endpoint": "ws://h", "open_messages": [{"token": "abc"}]}, "literal"),
        ({"endpoint": "ws://h", "auth": {"bearer_token": "abc"}}, "literally"),
        ({"endpoint": "ws://h", "ping_interval": 0}, "greater than 0"),
        ({"endpoint": "ws://h", "protocols": ["bad protocol"]}, "should match pattern"),
    ],
)
def test_bad_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        WebSocketResource(name="feed", **fields)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return hs.make_certificate(tmp_path_factory.mktemp("tls"))


