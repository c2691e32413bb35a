"""The framework integrations, each with a real server on loopback, real HTTP requests, a real
PostgreSQL resource and a CSV file resource."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from fastapi import Depends, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.backends.test_postgresql import PG_URL
from tests.registry.support import csv_manifest, eventually, fast_settings
from tests.support.http_servers import start_app
from tests.support.services import free_port, require_service
from xresource.integrations.starlette import lease, resource
from xresource.registry import Registry

# FastAPI resolves these annotations from the module's globals.
PgLease = Annotated[Any, Depends(lease("pg"))]
Orders = Annotated[Any, Depends(resource("orders"))]


@pytest.fixture
def folder(manifests: Path, data: Path) -> Path:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    (manifests / "pg.yaml").write_text(
        f"name: pg\ntype: postgresql\nconnection_string: {PG_URL}\nmin_pool_size: 1\nmax_pool_size: 2\n"
    )
    (manifests / "orders.yaml").write_text(csv_manifest("orders", data / "a.csv", "tags: [sales]"))
    return manifests


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.get(url, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def _metric_names(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("name", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _check_probe_routes(http: aiohttp.ClientSession, url: str, prefix: str) -> None:
    """What every mount must answer, whatever the framework."""
    base = url + prefix
    assert (await _get(http, f"{base}/healthz"))[0] == 200
    status, body = await _get(http, f"{base}/readyz")
    assert (status, body) == (200, {"status": "ready", "ready": True, "not_ready": {}, "pending": {}, "reload_error": None})
    status, body = await _get(http, f"{base}/resources")
    assert status == 200
    assert {r["name"]: r["state"] for r in body["resources"]} == {"orders": "ready", "pg": "ready"}
    status, body = await _get(http, f"{base}/resources/orders")
    assert (status, body["tags"], body["type"]) == (200, ["sales"], "csv")
    assert (await _get(http, f"{base}/resources/nope"))[0] == 404
    status, text = await _get(http, f"{base}/metrics")
    assert status == 200
    samples = _metric_names(text)
    assert samples[("xresource_pool_max", "pg")] == 2.0
    assert samples[("xresource_resource_state", "orders")] in (0.0, 1.0)
    assert samples[("xresource_ready", "")] == 1.0
    status, page = await _get(http, f"{base}/")
    assert status == 200
    assert "xresource status" in page
    assert 'data-name="pg"' in page
    assert f'src="{prefix}/status/static/status.js"' in page
    status, script = await _get(http, f"{base}/status/static/status.js")
    assert (status, "EventSource" in script) == (200, True)
    status, fragments = await _get(http, f"{base}/status/fragments")
    assert status == 200
    assert 'data-name="orders"' in fragments["rows"]
    # The same protections as `serve`: a foreign Host name, a cross-site reload.
    foreign = {"Host": "rebind.attacker.example"}
    assert (await _get(http, f"{base}/resources", headers=foreign))[0] == 421
    assert (await _get(http, f"{base}/healthz", headers=foreign))[0] == 200
    async with http.post(f"{base}/reload", data=b"x", headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 415
    async with http.post(f"{base}/reload", json={}) as response:
        assert response.status == 200
        assert (await response.json())["outcome"] == "unchanged"


# ---- aiohttp --------------------------------------------------------------------------------


async def test_aiohttp_cleanup_ctx_and_routes(folder: Path, http: aiohttp.ClientSession) -> None:
    from xresource.integrations.aiohttp import REGISTRY_KEY, add_routes, registry_context

    registry = Registry(folder, settings=fast_settings())
    app = web.Application()
    app.cleanup_ctx.append(registry_context(registry))
    add_routes(app, registry, prefix="/ops")

    async def answer(request: web.Request) -> web.Response:
        db = request.app[REGISTRY_KEY].get("pg")
        rows = await request.app[REGISTRY_KEY].get("orders").read()
        return web.json_response({"answer": await db.fetchval("SELECT 41 + 1"), "orders": len(rows)})

    app.router.add_get("/answer", answer)
    server = await start_app(app)  # runs the cleanup context: the registry starts here
    try:
        assert registry.names() == ["orders", "pg"]
        assert await _get(http, f"{server.url}/answer") == (200, {"answer": 42, "orders": 2})
        # The app's own routes are the app's business: no Host rule of ours applies to them.
        assert (await _get(http, f"{server.url}/answer", headers={"Host": "api.example"}))[0] == 200
        await _check_probe_routes(http, server.url, "/ops")
        assert (await _get(http, f"{server.url}/healthz"))[0] == 404  # only under the prefix
    finally:
        await server.stop()
    assert registry.names() == []  # stopped with the app


async def test_aiohttp_background_start_answers_starting_then_ready(
    manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    from xresource.integrations.aiohttp import add_routes, registry_context

    (manifests / "orders.yaml").write_text(csv_manifest("orders", data / "a.csv"))
    registry = Registry(manifests, settings=fast_settings())
    app = web.Application()
    app.cleanup_ctx.append(registry_context(registry, background=True))
    probes = add_routes(app, registry)
    server = await start_app(app)
    try:
        await eventually(lambda: probes.phase == "running", what="started in the background")
        assert (await _get(http, f"{server.url}/readyz"))[1]["status"] == "ready"
    finally:
        await server.stop()
    assert probes.phase == "stopping"


def test_prefix_must_look_like_a_path() -> None:
    from xresource.integrations.aiohttp import add_routes

    registry = Registry(".", settings=fast_settings())
    for bad in ("ops", "/ops/", "/{x}"):
        with pytest.raises(ValueError, match="prefix must look like"):
            add_routes(web.Application(), registry, prefix=bad)


# ---- Starlette / FastAPI --------------------------------------------------------------------


class Uvicorn:
    """A real uvicorn server for an ASGI app on a spare loopback port, in this event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the test runner owns the signals
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Uvicorn:
        self._task = asyncio.create_task(self.server.serve())
        await eventually(lambda: self.server.started or self._task.done(), timeout=20, what="uvicorn up")
        assert self.server.started, self._task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        await self._task


async def test_fastapi_lifespan_dependencies_and_routes(folder: Path, http: aiohttp.ClientSession) -> None:
    from xresource.integrations.starlette import add_routes, registry_lifespan

    registry = Registry(folder, settings=fast_settings())
    app = FastAPI(lifespan=registry_lifespan(registry))
    add_routes(app, registry, prefix="/ops")

    @app.get("/answer")
    async def answer(db: PgLease, orders: Orders) -> Any:
        return {
            "answer": await db.fetchval("SELECT 41 + 1"),
            "leases_while_handling": registry.status()["pg"].leases,
            "orders": len(await orders.read()),
        }

    async with Uvicorn(app) as server:
        assert await _get(http, f"{server.url}/answer") == (
            200,
            {"answer": 42, "leases_while_handling": 1, "orders": 2},
        )
        assert registry.status()["pg"].leases == 0  # the lease ended with the request
        await _check_probe_routes(http, server.url, "/ops")
    assert registry.names() == []  # the lifespan stopped it


async def test_starlette_routes_list_and_own_lifespan(folder: Path, http: aiohttp.ClientSession) -> None:
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    from xresource.integrations.starlette import registry_lifespan, routes

    registry = Registry(folder, settings=fast_settings())
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with registry_lifespan(registry)(app) as state:  # combined with the app's own
            seen.append("started")
            yield state
        seen.append("stopped")

    app = Starlette(routes=routes(registry), lifespan=lifespan)
    async with Uvicorn(app) as server:
        await _check_probe_routes(http, server.url, "")
    assert seen == ["started", "stopped"]
    assert registry.names() == []
