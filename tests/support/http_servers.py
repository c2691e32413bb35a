"""Real aiohttp servers on loopback for the REST, WebSocket and SSE tests.

Each server is an ``aiohttp.web`` application started on a spare port of
127.0.0.1 (the OS picks it, so parallel runs cannot collide). The servers
record what they received, so tests assert on the server's view: the headers,
signatures, attempts and resume points that actually arrived. Secrets the
servers check against are fixed test values, not real credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import subprocess
import time
from base64 import b64encode
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

# The credentials the REST server accepts (tests put them in the environment).
BEARER_TOKEN = "tok-3f9a-bearer-secret"
BASIC_USER = "svc"
BASIC_PASSWORD = "pw-basic-8c1d-secret"
API_KEY = "key+/=&-7e2b-secret"  # characters that need escaping in a query string
HMAC_SECRET = "hmac-5d4c-signing-secret"


@dataclass
class RunningServer:
    """A started server: ``url`` is ``http(s)://127.0.0.1:<port>``."""

    runner: web.AppRunner
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_app(
    app: web.Application, *, port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> RunningServer:
    """Start ``app`` on 127.0.0.1 (port 0: a spare one) and return where it listens."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.05, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    return RunningServer(runner, "127.0.0.1", int(bound), "https" if ssl_context else "http")


# ---- TLS ------------------------------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA); returns (cert, key)."""
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# ---- REST -----------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    path_qs: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class RestState:
    requests: list[Received] = field(default_factory=list)
    attempts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    attempt_times: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retry_after: str = "1"
    in_flight: int = 0
    max_in_flight: int = 0

    def seen(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


def rest_app() -> tuple[web.Application, RestState]:
    """``/echo`` (any method) answers what it got; other routes test auth, errors and retries."""
    state = RestState()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        state.requests.append(
            Received(
                request.method, request.path, request.raw_path, dict(request.query),
                dict(request.headers), body,
            )
        )  # fmt: skip
        state.attempts[request.path] += 1
        state.attempt_times[request.path].append(asyncio.get_running_loop().time())
        response: web.StreamResponse = await handler(request)
        return response

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": parsed,
            }
        )

    async def secure(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        body = await request.read()
        if kind == "bearer":
            ok = request.headers.get("Authorization") == f"Bearer {BEARER_TOKEN}"
        elif kind == "basic":
            expected = b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
            ok = request.headers.get("Authorization") == f"Basic {expected}"
        elif kind == "header":
            ok = request.headers.get("X-Api-Key") == API_KEY
        elif kind == "query":
            ok = request.query.get("key") == API_KEY
        elif kind == "hmac":
            ok = _hmac_ok(request, body)
        else:
            raise web.HTTPNotFound()
        if not ok:
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"ok": True, "kind": kind})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"error": f"status {code}"}, status=code)

    async def flaky(request: web.Request) -> web.Response:
        # Answers 503 until the path has been asked `failures` times, then 200.
        failures = int(request.match_info["failures"])
        count = state.attempts[request.path]
        if count <= failures:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"attempts": count})

    async def throttled(request: web.Request) -> web.Response:
        if state.attempts[request.path] == 1:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": state.retry_after}
            )
        return web.json_response({"attempts": state.attempts[request.path]})

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.json_response({"error": "upstream"}, status=502)

    async def slow(request: web.Request) -> web.Response:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(float(request.query.get("delay", "1")))
        finally:
            state.in_flight -= 1
        return web.json_response({"slow": True})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def leaky(request: web.Request) -> web.Response:
        # A careless server that echoes the credentials it got back in an error.
        got = request.headers.get("Authorization", "") + " " + request.query.get("key", "")
        return web.Response(status=400, text=f"bad request, you sent {got}")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def redirect_loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path_qs)

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="{nope", content_type="application/json")

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_route("*", "/secure/{kind}", secure)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/flaky/{failures}", flaky)
    app.router.add_route("*", "/throttled", throttled)
    app.router.add_route("*", "/bad-gateway", bad_gateway)
    app.router.add_get("/slow", slow)
    app.router.add_get("/text", text)
    app.router.add_get("/empty", empty)
    app.router.add_get("/leaky", leaky)
    app.router.add_route("*", "/broken", broken)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/redirect-loop", redirect_loop)
    app.router.add_route("*", "/", echo)
    return app, state


def _hmac_ok(request: web.Request, body: bytes) -> bool:
    # Recomputed here from the documented canonical string, independently of the client code.
    timestamp = request.headers.get("X-Timestamp", "")
    signature = request.headers.get("X-Signature", "")
    canonical = b"\n".join([request.method.encode(), request.raw_path.encode(), timestamp.encode(), body])
    expected = hmac.new(HMAC_SECRET.encode(), canonical, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(int(timestamp) - int(time.time())) < 300
    return fresh and hmac.compare_digest(expected, signature)


# ---- WebSocket ------------------------------------------------------------------------------


@dataclass
class WsConnection:
    headers: dict[str, str]
    query: dict[str, str]
    protocol: str | None
    received: list[Any] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    request: web.Request | None = None

    def open_transport(self) -> bool:
        transport = self.request.transport if self.request is not None else None
        return transport is not None and not transport.is_closing()

    def subscribes(self) -> list[str]:
        return [m["channel"] for m in self.received if isinstance(m, dict) and m.get("action") == "subscribe"]


@dataclass
class WsState:
    connections: list[WsConnection] = field(default_factory=list)
    reject_status: int | None = None

    @property
    def live(self) -> list[WsConnection]:
        return [c for c in self.connections if c.ws is not None and not c.ws.closed and c.open_transport()]

    async def broadcast(self, message: Any) -> None:
        data = message if isinstance(message, str | bytes) else json.dumps(message)
        for conn in self.live:
            assert conn.ws is not None
            if isinstance(data, bytes):
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(data)

    async def drop(self) -> None:
        """Cut every live connection without a closing handshake, as a network failure would."""
        for conn in self.live:
            transport = conn.request.transport if conn.request is not None else None
            if transport is not None:
                transport.abort()


def ws_app(protocols: tuple[str, ...] = ("v2.json", "v1.json")) -> tuple[web.Application, WsState]:
    """Records every message; answers subscribe with ``subscribed`` and everything else with ``echo``."""
    state = WsState()

    async def handler(request: web.Request) -> web.StreamResponse:
        if state.reject_status is not None:
            return web.json_response({"error": "rejected"}, status=state.reject_status)
        ws = web.WebSocketResponse(protocols=protocols, heartbeat=None)
        await ws.prepare(request)
        conn = WsConnection(
            dict(request.headers), dict(request.query), ws.ws_protocol, ws=ws, request=request
        )
        state.connections.append(conn)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    payload: Any = json.loads(msg.data)
                except ValueError:
                    payload = msg.data
            elif msg.type == WSMsgType.BINARY:
                payload = bytes(msg.data)
            else:
                continue
            conn.received.append(payload)
            if isinstance(payload, dict) and payload.get("action") == "subscribe":
                await ws.send_json({"type": "subscribed", "channel": payload.get("channel")})
            elif isinstance(payload, bytes):
                await ws.send_bytes(payload)
            else:
                await ws.send_json({"type": "echo", "data": payload})
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app, state


# ---- SSE ------------------------------------------------------------------------------------


@dataclass
class SseState:
    """Serves events 1..total; the first ``drops`` connections are cut after ``per_connection`` events."""

    total: int = 6
    per_connection: int = 3
    drops: int = 1
    abort: bool = False  # cut the TCP connection instead of ending the response
    retry_ms: int | None = 50
    last_event_ids: list[str | None] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent_last: str | None = None
    status: int = 200
    extra: list[str] = field(default_factory=list)  # raw frames sent first on every connection
    unicode_ids: bool = False  # send a non-ASCII id record first


def sse_app() -> tuple[web.Application, SseState]:
    state = SseState()

    async def handler(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        state.last_event_ids.append(last)
        state.headers.append(dict(request.headers))
        if state.status != 200:
            return web.json_response({"error": "no"}, status=state.status)
        # The resume contract: the client must come back with the id we sent last.
        if state.sent_last is not None and last != state.sent_last:
            state.errors.append(f"expected Last-Event-ID {state.sent_last!r}, got {last!r}")
        start = int(last) + 1 if last and last.isdigit() else 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        connection = len(state.last_event_ids)
        if state.retry_ms is not None:
            await response.write(f"retry: {state.retry_ms}\n\n".encode())
        if state.unicode_ids:
            await response.write(b"id: \xc3\xa9t\xc3\xa9-0\n\n")
        for frame in state.extra:
            await response.write(frame.encode())
        for sent, n in enumerate(range(start, state.total + 1), start=1):
            kind = "tick" if n % 2 else "tock"
            frame = f"id: {n}\nevent: {kind}\ndata: {json.dumps({'n': n})}\n\n"
            await response.write(frame.encode())
            state.sent_last = str(n)
            if connection <= state.drops and sent >= state.per_connection:
                if state.abort and request.transport is not None:
                    request.transport.abort()
                    return response
                return response  # ends the chunked body: the stream closes cleanly
        if connection <= state.drops and start > state.total:
            return response  # nothing left to send on a connection that is to be dropped
        await asyncio.sleep(3600)  # stay open like a real event stream
        return response

    app = web.Application()
    app.router.add_get("/events", handler)
    return app, state
