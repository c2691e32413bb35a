"""``xresource serve`` start and stop against a backend that accepts and never answers:
liveness answers before connects finish, SIGTERM stops within the drain budget."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.registry.support import csv_manifest, eventually
from tests.server.support import Serve, SilentServer

# Connects may take a minute; stopping must not wait for them (budget: 1 + 0.5 + 1 s).
SLOW_REGISTRY = "connect_timeout = 60\ndrain_timeout = 1\n"
SLOW_SERVER = "[server]\nshutdown_timeout = 0.5\n"
STOP_LIMIT = 15  # seconds: far above the stop budget, far below the 60 s connect


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    server = await SilentServer().start()
    yield server
    await server.stop()


def _pg_manifest(name: str, port: int) -> str:
    return (
        f"name: {name}\ntype: postgresql\n"
        f"connection_string: postgresql://app@127.0.0.1:{port}/app\nconnect_timeout: 60\n"
    )


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_healthz_answers_while_resources_connect_and_sigterm_stops_the_start(
    tmp_path: Path, manifests: Path, data: Path, silent: SilentServer, http: aiohttp.ClientSession
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "pg.yaml").write_text(_pg_manifest("pg", silent.port))
    serve = Serve(tmp_path, manifests, registry=SLOW_REGISTRY, settings=SLOW_SERVER)
    try:
        await serve.wait_up(http, started=False)
        await eventually(lambda: silent.connections >= 1, timeout=20, what="serve connects to pg")
        assert (await _get(http, f"{serve.url}/healthz"))[0] == 200
        status, body = await _get(http, f"{serve.url}/readyz")
        assert (status, body["status"], body["ready"]) == (503, "starting", False)
        assert (await _get(http, f"{serve.url}/healthz"))[0] == 200  # still, while pg hangs
    finally:
        code, err = serve.stop(signal.SIGTERM, timeout=STOP_LIMIT)
    assert code == 0, err
    assert "stopped during start" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("trigger", ["watcher", "post"])
async def test_sigterm_stops_serve_while_a_reload_hangs_on_a_connect(
    tmp_path: Path,
    manifests: Path,
    data: Path,
    silent: SilentServer,
    http: aiohttp.ClientSession,
    trigger: str,
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    extra = ["--no-watch"] if trigger == "post" else []
    serve = Serve(tmp_path, manifests, *extra, registry=SLOW_REGISTRY, settings=SLOW_SERVER)
    posts: list[asyncio.Task[aiohttp.ClientResponse]] = []
    try:
        await serve.wait_up(http)
        assert (await _get(http, f"{serve.url}/readyz"))[1]["status"] == "ready"
        (manifests / "pg.yaml").write_text(_pg_manifest("pg", silent.port))
        if trigger == "post":
            posts.append(asyncio.create_task(http.post(f"{serve.url}/reload", json={})))
        await eventually(lambda: silent.connections >= 1, timeout=20, what="the reload connects to pg")
        # Another POST queues behind the hung reload; SIGTERM must wait for neither.
        posts.append(asyncio.create_task(http.post(f"{serve.url}/reload", json={})))
        assert (await _get(http, f"{serve.url}/healthz"))[0] == 200
        assert (await _get(http, f"{serve.url}/resources"))[0] == 200
    finally:
        code, err = serve.stop(signal.SIGTERM, timeout=STOP_LIMIT)
    assert code == 0, err
    assert "Traceback" not in err
    if trigger == "post":  # the reload holds the registry's lock for 60 s: the hard deadline ends it
        assert "exiting without waiting for the rest" in err
    for outcome in await asyncio.gather(*posts, return_exceptions=True):
        assert isinstance(outcome, aiohttp.ClientError), outcome  # cut off, never answered
