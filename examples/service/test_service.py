"""Tests of the orders service with xresource's pytest plugin (docs/testing.md).

Run from this folder with ``pytest``, or from the repository root as part of its suite.
The folders are the service's own: the base manifests and the ``local`` overlay (the
PostgreSQL and Redis of a developer's machine and of CI).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from orders_service.app import build_app

from xresource import Registry

HERE = Path(__file__).resolve().parent
FOLDERS = [HERE / "resources.d", HERE / "overlays" / "local"]


class OrdersInMemory:
    """A stand-in for ``orders_db``: keeps orders in a list and answers what the service asks."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def execute(self, query: str, *args: Any) -> str:
        assert query.startswith("CREATE TABLE IF NOT EXISTS")
        return "CREATE TABLE"

    async def fetchval(self, query: str, sku: str, qty: int) -> int:
        assert query.startswith("INSERT INTO")
        self.rows.append({"id": len(self.rows) + 1, "sku": sku, "qty": qty})
        return len(self.rows)

    async def fetch(self, query: str) -> list[dict[str, Any]]:
        return list(self.rows)


@pytest.fixture
def names() -> dict[str, str]:
    """A table and a channel of this test's own: other tests use the same servers."""
    suffix = uuid.uuid4().hex[:12]
    return {"table": f"orders_{suffix}", "channel": f"orders-{suffix}"}


@pytest.fixture
def registry(make_registry: Any) -> Registry:
    registry: Registry = make_registry(folders=FOLDERS)
    return registry


@pytest.fixture
async def client(registry: Registry, names: dict[str, str]) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(registry, **names))) as http:
        yield http


async def next_event(registry: Registry, channel: str) -> asyncio.Future[Any]:
    """Subscribe to ``channel`` now; the future gets the first message's data."""
    events = registry.get("order_events")
    received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await events.subscribe(channel, lambda data: received.done() or received.set_result(data))
    return received


@pytest.mark.asyncio
async def test_an_order_is_stored_and_announced(
    registry: Registry, xresource_override: Any, names: dict[str, str]
) -> None:
    """The HTTP side, with the database replaced by a stand-in (Redis and the CSV are real)."""
    orders = xresource_override("orders_db", OrdersInMemory())  # before the app starts it
    async with TestClient(TestServer(build_app(registry, **names))) as http:
        announced = await next_event(registry, names["channel"])
        response = await http.post("/orders", json={"sku": "T-2", "qty": 2})
        assert response.status == 201
        assert await response.json() == {"id": 1, "sku": "T-2", "qty": 2}
        assert orders.rows == [{"id": 1, "sku": "T-2", "qty": 2}]
        assert await asyncio.wait_for(announced, 5) == {"id": 1, "sku": "T-2", "qty": 2}
        assert (await http.get("/orders")).status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        ({"sku": "X-9", "qty": 1}, 404, "no product 'X-9'"),
        ({"sku": "K-1", "qty": 0}, 400, "qty must be a positive whole number"),
        ({"sku": "K-1", "qty": "2"}, 400, "qty must be a positive whole number"),
        ({"sku": "K-1", "qty": True}, 400, "qty must be a positive whole number"),
    ],
)
async def test_bad_orders_are_refused_and_nothing_is_stored(
    registry: Registry, xresource_override: Any, names: dict[str, str], body: Any, status: int, why: str
) -> None:
    orders = xresource_override("orders_db", OrdersInMemory())
    async with TestClient(TestServer(build_app(registry, **names))) as http:
        response = await http.post("/orders", json=body)
        assert (response.status, await response.text()) == (status, why)
    assert orders.rows == []


@pytest.mark.asyncio
async def test_products_come_from_the_csv_file(client: TestClient[Any, Any]) -> None:
    response = await client.get("/products")
    assert await response.json() == [
        {"sku": "K-1", "name": "kettle", "price": 24.9},
        {"sku": "T-2", "name": "teapot", "price": 18.5},
        {"sku": "M-3", "name": "mug", "price": 6.0},
    ]


@pytest.mark.asyncio
async def test_against_the_real_postgresql(
    client: TestClient[Any, Any], registry: Registry, names: dict[str, str]
) -> None:
    try:
        for sku, qty in (("K-1", 1), ("M-3", 4)):
            assert (await client.post("/orders", json={"sku": sku, "qty": qty})).status == 201
        response = await client.get("/orders")
        assert [(o["sku"], o["qty"]) for o in await response.json()] == [("K-1", 1), ("M-3", 4)]
        db = registry.get("orders_db")
        assert await db.fetchval(f"SELECT sum(qty) FROM {names['table']}") == 5  # noqa: S608 - our own name
        ready = await client.get("/ops/readyz")
        assert (ready.status, (await ready.json())["status"]) == (200, "ready")
    finally:
        await registry.get("orders_db").execute(f"DROP TABLE IF EXISTS {names['table']}")
