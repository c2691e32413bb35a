"""``Registry.transaction(name, **options)``: a lease and a transaction in one ``async with``,
against the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.registry.support import csv_manifest, eventually, fast_settings
from tests.support.services import require_service
from xresource.errors import XResourceNotFoundError
from xresource.registry import Registry

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def registry(manifests: Path, data: Path) -> AsyncIterator[Registry]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    (manifests / "shop_db.yaml").write_text(
        f"name: shop_db\ntype: postgresql\nconnection_string: {PG_URL}\nmin_pool_size: 1\nmax_pool_size: 2\n"
    )
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings(connect_timeout=10)) as running:
        yield running


@pytest.fixture
async def table(registry: Registry) -> AsyncIterator[str]:
    name = f"xr_tx_{uuid.uuid4().hex[:12]}"
    db = registry.get("shop_db")
    await db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    yield name
    await db.execute(f"DROP TABLE {name}")


async def test_commits_with_the_options_and_holds_a_lease_meanwhile(registry: Registry, table: str) -> None:
    async with registry.transaction("shop_db", isolation="serializable", readonly=False) as conn:
        assert registry.status()["shop_db"].leases == 1  # a reload waits for this block
        assert await conn.fetchval("SHOW transaction_isolation") == "serializable"
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert await registry.get("shop_db").fetchval(f"SELECT count(*) FROM {table}") == 0  # not yet
    assert registry.status()["shop_db"].leases == 0
    assert await registry.get("shop_db").fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_an_exception_rolls_back_comes_out_untouched_and_ends_the_lease(
    registry: Registry, table: str
) -> None:
    async def declined() -> None:
        async with registry.transaction("shop_db") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            raise RuntimeError("declined")

    with pytest.raises(RuntimeError, match="declined"):
        await declined()
    assert await registry.get("shop_db").fetchval(f"SELECT count(*) FROM {table}") == 0
    assert registry.status()["shop_db"].leases == 0


async def test_cancelled_inside_rolls_back_and_ends_the_lease(registry: Registry, table: str) -> None:
    inside = asyncio.Event()

    async def work() -> None:
        async with registry.transaction("shop_db") as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await eventually(inside.is_set, what="inside the transaction")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.status()["shop_db"].leases == 0
    assert await registry.get("shop_db").fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_bad_options_unknown_names_and_types_without_transactions_are_refused(
    registry: Registry,
) -> None:
    with pytest.raises(ValueError, match="isolation"):
        async with registry.transaction("shop_db", isolation="sometimes"):
            pass
    with pytest.raises(TypeError):
        async with registry.transaction("shop_db", no_such_option=True):
            pass
    with pytest.raises(XResourceNotFoundError):
        async with registry.transaction("shop_dbb"):
            pass
    with pytest.raises(TypeError, match="has no transactions"):
        async with registry.transaction("a"):
            pass
    assert all(status.leases == 0 for status in registry.status().values())
