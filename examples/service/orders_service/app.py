"""The orders service: an aiohttp application on three resources of the registry.

- ``products`` (a CSV file): the catalogue, ``GET /products``;
- ``orders_db`` (PostgreSQL): ``POST /orders`` stores an order, ``GET /orders`` lists them;
- ``order_events`` (Redis Pub/Sub): every stored order is announced on a channel.

The registry starts and stops with the application (``registry_context``), and its health,
readiness and metrics routes are mounted under ``/ops``.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from xresource import Registry
from xresource.integrations.aiohttp import REGISTRY_KEY, add_routes, registry_context

HERE = Path(__file__).resolve().parent.parent
SETTINGS_KEY = web.AppKey("orders_settings", dict)


def build_app(registry: Registry, *, table: str = "orders", channel: str = "orders") -> web.Application:
    """The application; ``table`` and ``channel`` let tests use names of their own."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", table):
        raise ValueError(f"not a plain table name: {table!r}")
    app = web.Application()
    app[SETTINGS_KEY] = {"table": table, "channel": channel}
    app.cleanup_ctx.append(registry_context(registry))
    app.cleanup_ctx.append(_schema)
    add_routes(app, registry, prefix="/ops")
    app.router.add_get("/products", list_products)
    app.router.add_get("/orders", list_orders)
    app.router.add_post("/orders", place_order)
    return app


async def _schema(app: web.Application) -> AsyncIterator[None]:
    table = app[SETTINGS_KEY]["table"]
    db = app[REGISTRY_KEY].get("orders_db")
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (id serial PRIMARY KEY, sku text NOT NULL, qty int NOT NULL)"
    )
    yield


async def list_products(request: web.Request) -> web.Response:
    rows = await request.app[REGISTRY_KEY].get("products").read()
    return web.json_response([{**row, "price": float(row["price"])} for row in rows])


async def list_orders(request: web.Request) -> web.Response:
    table = request.app[SETTINGS_KEY]["table"]
    query = f"SELECT id, sku, qty FROM {table} ORDER BY id"  # noqa: S608 - build_app checked the name
    rows = await request.app[REGISTRY_KEY].get("orders_db").fetch(query)
    return web.json_response([dict(row) for row in rows])


async def place_order(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    settings = request.app[SETTINGS_KEY]
    body = await request.json()
    sku, qty = body.get("sku"), body.get("qty")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
        raise web.HTTPBadRequest(text="qty must be a positive whole number")
    catalogue = {row["sku"] for row in await registry.get("products").read()}
    if sku not in catalogue:
        raise web.HTTPNotFound(text=f"no product {sku!r}")
    # A lease keeps this version of the database for the whole unit of work, even if a
    # reload replaces it meanwhile.
    async with registry.lease("orders_db") as db:
        order_id = await db.fetchval(
            f"INSERT INTO {settings['table']} (sku, qty) VALUES ($1, $2) RETURNING id",  # noqa: S608 - checked name
            sku,
            qty,
        )
    await registry.get("order_events").publish(settings["channel"], {"id": order_id, "sku": sku, "qty": qty})
    return web.json_response({"id": order_id, "sku": sku, "qty": qty}, status=201)


def main() -> None:  # pragma: no cover - run by hand: python -m orders_service.app
    folders = [
        HERE / "resources.d",
        *(HERE / "overlays" / env for env in os.environ.get("ORDERS_ENV", "").split(",") if env),
    ]
    web.run_app(build_app(Registry(folders, watch=True)), host="127.0.0.1", port=8000)


if __name__ == "__main__":  # pragma: no cover
    main()
