"""The HTTP server under hostile clients: slow headers, idle connections, foreign Host names,
cross-site reload requests, reload bursts. Real servers on loopback, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.registry.support import csv_manifest, eventually, fast_settings
from tests.server.support import Serve, closed_by_server, partial_header_clients
from xresource.errors import ManifestError
from xresource.registry import Registry
from xresource.server.app import create_app
from xresource.server.guard import HostPolicy
from xresource.server.http import HttpServer
from xresource.settings import ServerSettings, load_settings

TOKEN = "reload-Tok-4411-never-print"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def registry(manifests: Path, data: Path) -> AsyncIterator[Registry]:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as running:
        yield running


async def _serve(registry: Registry, **settings: object) -> HttpServer:
    server_settings = ServerSettings.model_validate(settings)
    app = create_app(registry, settings=server_settings, bound="127.0.0.1")
    server = HttpServer(app, "127.0.0.1", 0, server_settings)
    await server.start()
    return server


async def _trickle_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, every: float, limit: float
) -> bool:
    """Send a byte every ``every`` seconds until the server closes the connection (True) or
    ``limit`` seconds passed with it open (False)."""
    closed = asyncio.ensure_future(reader.read())  # ends at EOF or a reset
    try:
        for _ in range(int(limit / every)):
            try:
                writer.write(b"x")
                await writer.drain()
            except ConnectionError:
                return True
            done, _ = await asyncio.wait({closed}, timeout=every)
            if done:
                return True
        return False
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await closed


def _reloads(registry: Registry) -> int:
    return sum(registry.reload_counts.values())


# ---- connections ----------------------------------------------------------------------------


async def test_a_connection_that_never_finishes_its_header_is_closed(registry: Registry) -> None:
    server = await _serve(registry, header_timeout=0.3, keepalive_timeout=30)
    try:
        (reader, writer), *_ = await partial_header_clients(server.port, 1)
        # Trickling bytes does not extend the deadline (a slowloris client sends one now and
        # then): the server closes while the client keeps sending, long before it would stop.
        assert await _trickle_until_closed(reader, writer, every=0.05, limit=30)
        assert server.limiter.timed_out == 1
        assert server.limiter.open == 0
        writer.close()
    finally:
        await server.stop()


async def test_an_idle_keep_alive_connection_is_closed(registry: Registry) -> None:
    server = await _serve(registry, header_timeout=30, keepalive_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        await reader.readuntil(b"\r\n\r\n")  # the rest of the head; the body follows
        assert await closed_by_server(reader, timeout=5)
        writer.close()
    finally:
        await server.stop()


async def test_at_the_cap_slow_connections_make_room_for_real_requests(
    registry: Registry, http: aiohttp.ClientSession
) -> None:
    server = await _serve(registry, max_connections=20, header_timeout=60)
    try:
        clients = await partial_header_clients(server.port, 60)
        await eventually(lambda: server.limiter.evicted >= 40, what="slow connections evicted")
        assert server.limiter.open <= 20
        for _ in range(3):  # a complete request always gets a slot
            async with http.get(f"{server.url}/healthz") as response:
                assert response.status == 200
        assert server.limiter.open <= 20
        for _, writer in clients:
            writer.close()
    finally:
        await server.stop()


async def test_an_oversized_header_is_refused(registry: Registry, http: aiohttp.ClientSession) -> None:
    server = await _serve(registry, max_field_size=1024)
    try:
        async with http.get(f"{server.url}/healthz", headers={"X-Big": "a" * 4096}) as response:
            assert response.status == 400
        async with http.get(f"{server.url}/healthz", headers={"X-Fine": "a" * 512}) as response:
            assert response.status == 200
    finally:
        await server.stop()


async def test_serve_survives_300_slow_connections(
    tmp_path: Path, manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    """The reported attack: descriptors stay bounded, /healthz answers, no traceback floods stderr."""
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    serve = Serve(tmp_path, manifests, settings="[server]\nmax_connections = 40\nheader_timeout = 1.0\n")
    clients: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await serve.wait_up(http)
        baseline = serve.open_fds()
        clients = await partial_header_clients(serve.port, 300)
        # Connections accepted in one batch (up to the backlog) are counted once their
        # protocol starts; after that the count stays at the cap while all 300 clients wait.
        bound = baseline + 40 + 5
        await eventually(lambda: serve.open_fds() <= bound, timeout=5, what="descriptors at the cap")
        async with http.get(f"{serve.url}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{serve.url}/readyz") as response:
            assert response.status == 200
        assert serve.open_fds() <= bound, (baseline, serve.open_fds())
        # Past the header deadline every slow connection is gone.
        closed = await asyncio.gather(*(closed_by_server(r, timeout=10) for r, _ in clients))
        assert all(closed)
        await eventually(lambda: serve.open_fds() <= baseline + 2, timeout=10, what="descriptors released")
    finally:
        for _, writer in clients:
            writer.close()
        code, err = serve.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert len(err) < 20_000, err[-2000:]


# ---- Host -----------------------------------------------------------------------------------

GUARDED = [("GET", "/readyz"), ("GET", "/resources"), ("GET", "/resources/a"), ("GET", "/metrics"),
           ("POST", "/reload"), ("GET", "/"), ("GET", "/status/fragments"), ("GET", "/status/events"),
           ("GET", "/status/static/status.js")]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), GUARDED)
async def test_a_foreign_host_is_refused_on_every_route_but_healthz(
    registry: Registry, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    server = await _serve(registry)
    try:
        before = _reloads(registry)
        headers = {"Host": f"rebind.attacker.example:{server.port}", "Content-Type": "application/json"}
        async with http.request(method, f"{server.url}{path}", headers=headers) as response:
            assert response.status == 421
            body = await response.text()
        assert "allowed_hosts" in body
        assert "csv" not in body
        assert _reloads(registry) == before
        async with http.get(f"{server.url}/healthz", headers=headers) as response:
            assert response.status == 200  # liveness tells nothing and must never fail on a name
        if path != "/status/events":  # a stream that does not end: its refusal is what matters here
            async with http.request(
                method, f"{server.url}{path}", headers={**headers, "Host": "localhost"}
            ) as r:
                assert r.status == 200
    finally:
        await server.stop()


async def test_allowed_hosts_setting(registry: Registry, http: aiohttp.ClientSession) -> None:
    server = await _serve(registry, allowed_hosts=["status.internal", ".corp.example"])
    try:
        for host, expected in [
            ("status.internal", 200),
            ("STATUS.internal.:8080", 200),
            ("a.corp.example", 200),
            ("corp.example", 200),
            ("evilcorp.example", 421),
            ("status.internal.evil.example", 421),
            ("10.1.2.3", 421),  # an address this server is not bound to
        ]:
            async with http.get(f"{server.url}/resources", headers={"Host": host}) as response:
                assert response.status == expected, host
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("bound", "allowed", "host", "ok"),
    [
        ("127.0.0.1", [], "127.0.0.1:8080", True),
        ("127.0.0.1", [], "localhost:8080", True),
        ("127.0.0.1", [], "app.localhost", True),
        ("127.0.0.1", [], "[::1]:8080", True),
        ("127.0.0.1", [], "evil.example", False),
        ("127.0.0.1", [], "", False),
        ("127.0.0.1", [], None, True),  # HTTP/1.0 tools send none; browsers always do
        ("0.0.0.0", [], "10.0.3.7:8080", True),  # a pod IP (probes)
        ("0.0.0.0", [], "[fd00::7]:8080", True),
        ("0.0.0.0", [], "localhost", True),
        ("0.0.0.0", [], "myapp.default.svc", False),
        ("0.0.0.0", ["myapp.default.svc"], "myapp.default.svc:8080", True),
        ("10.0.3.7", [], "10.0.3.7", True),
        ("10.0.3.7", [], "10.0.3.8", False),
        ("10.0.3.7", [], "localhost", False),
        ("status.example", [], "status.example:443", True),
        ("127.0.0.1", ["*"], "anything.example", True),
    ],
)
def test_host_policy(bound: str, allowed: list[str], host: str | None, ok: bool) -> None:
    assert HostPolicy(bound, allowed).allows(host) is ok


# ---- POST /reload ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, None, 415),  # curl -X POST with nothing
        ({"Content-Type": "text/plain"}, b"x", 415),  # what a cross-site fetch(no-cors) sends
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", 415),  # an HTML form
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 415),
        ({"Content-Type": "application/json", "Origin": "http://attacker.example"}, b"{}", 403),
        ({"Content-Type": "application/json", "Origin": "null"}, b"{}", 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, b"{}", 403),
        ({"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, b"{}", 403),
        ({"Content-Type": "application/json"}, b"", 200),
        ({"Content-Type": "application/json; charset=utf-8", "Sec-Fetch-Site": "same-origin"}, b"{}", 200),
        ({"Authorization": "Bearer anything"}, None, 200),  # no token set: any non-simple request
    ],
)
async def test_reload_refuses_simple_and_cross_site_requests(
    registry: Registry, http: aiohttp.ClientSession, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    server = await _serve(registry)
    try:
        before = _reloads(registry)
        async with http.post(f"{server.url}/reload", headers=headers, data=body) as response:
            assert response.status == status, await response.text()
        assert _reloads(registry) == before + (1 if status == 200 else 0)
    finally:
        await server.stop()


async def test_reload_accepts_its_own_origin(registry: Registry, http: aiohttp.ClientSession) -> None:
    server = await _serve(registry)
    try:
        headers = {"Content-Type": "application/json", "Origin": server.url}
        async with http.post(f"{server.url}/reload", headers=headers) as response:
            assert response.status == 200
    finally:
        await server.stop()


async def test_reload_token(
    registry: Registry,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("XR_TEST_RELOAD_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    server = await _serve(registry, reload_token="${env:XR_TEST_RELOAD_TOKEN}")
    texts = []
    try:
        before = _reloads(registry)
        for authorization in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", TOKEN):
            headers = {"Content-Type": "application/json"}
            if authorization:
                headers["Authorization"] = authorization
            async with http.post(f"{server.url}/reload", headers=headers) as response:
                assert response.status == 401, authorization
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                texts.append(await response.text())
        assert _reloads(registry) == before
        async with http.post(
            f"{server.url}/reload", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            assert response.status == 200
            texts.append(await response.text())
        assert _reloads(registry) == before + 1
    finally:
        await server.stop()
    assert not any(TOKEN in text for text in texts)
    assert TOKEN not in caplog.text


def test_reload_token_must_be_a_reference(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[server]\nreload_token = "{TOKEN}"\n')
    with pytest.raises(ManifestError) as caught:
        load_settings(settings, environ=False)
    assert "reload_token" in str(caught.value)
    assert "${env:NAME}" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_serve_exits_1_when_the_token_reference_is_missing(
    tmp_path: Path, manifests: Path, data: Path
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    serve = Serve(tmp_path, manifests, settings='[server]\nreload_token = "${env:XR_NOT_SET_ANYWHERE}"\n')
    code, err = await asyncio.to_thread(serve.stop, 0)
    assert code == 1
    assert "[server] reload_token" in err
    assert "XR_NOT_SET_ANYWHERE" in err
    assert "Traceback" not in err


async def test_a_burst_of_reload_requests_runs_one_or_two_reloads(
    registry: Registry, manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    server = await _serve(registry)
    try:
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
        before = _reloads(registry)

        async def post() -> dict[str, object]:
            async with http.post(f"{server.url}/reload", json={}) as response:
                assert response.status == 200
                payload: dict[str, object] = await response.json()
                return payload

        answers = await asyncio.gather(*(post() for _ in range(30)))
        assert 1 <= _reloads(registry) - before <= 2
        assert "b" in registry  # every request saw a reload that started after it arrived
        assert {a["outcome"] for a in answers} <= {"applied", "unchanged"}
        assert any(a["added"] == ["b"] for a in answers)
    finally:
        await server.stop()
