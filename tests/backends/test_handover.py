"""The surge rule: a replaced database pool shrinks as its successor grows (docs/hot-reload.md).

Against the machine's PostgreSQL and MariaDB, through a registry on a folder, as a
deploy would do it: server connections are counted on the server (``pg_stat_activity``
by the resource's own ``application_name``, ``information_schema.processlist`` by a
database made for the test) while queries run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import require_service
from tests.support.waiting import eventually
from xresource import Registry
from xresource.backends.databases._handover import ConnectionBudget, Gate
from xresource.settings import Settings

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MY_BASE = "mysql://root@127.0.0.1:3306"


@dataclass
class Server:
    """One database server: how to write the manifest, and how to count its connections."""

    kind: str
    manifest: Callable[[int, int], str]
    ids: Callable[[], Awaitable[set[int]]]
    """The server's ids of the resource's connections (backend PIDs, MariaDB thread ids)."""
    new_arguments: str
    """A manifest line that changes the arguments the driver connects with."""

    async def count(self) -> int:
        return len(await self.ids())


@pytest.fixture(params=["postgresql", "mysql"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    if request.param == "postgresql":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        import asyncpg

        app = f"xrho-{uuid.uuid4().hex[:10]}"
        monitor = await asyncpg.connect(PG_URL)

        async def pg_ids() -> set[int]:
            rows = await monitor.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
            return {int(r["pid"]) for r in rows}

        def pg_manifest(low: int, high: int) -> str:
            return (
                f"name: db\ntype: postgresql\nconnection_string: {PG_URL}\napplication_name: {app}\n"
                f"min_pool_size: {low}\nmax_pool_size: {high}\n"
            )

        try:
            yield Server("postgresql", pg_manifest, pg_ids, "command_timeout: 17\n")
        finally:
            await monitor.close()
        return

    require_service("MariaDB", "127.0.0.1", 3306)
    import aiomysql

    db = f"xrho_{uuid.uuid4().hex[:10]}"
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE {db}")

    async def my_ids() -> set[int]:
        async with conn.cursor() as cur:
            await cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (db,))
            rows = await cur.fetchall()
        return {int(row[0]) for row in rows}

    def my_manifest(low: int, high: int) -> str:
        return (
            f"name: db\ntype: mysql\nconnection_string: {MY_BASE}/{db}\n"
            f"min_pool_size: {low}\nmax_pool_size: {high}\n"
        )

    try:
        yield Server("mysql", my_manifest, my_ids, "autocommit: false\n")
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE {db}")
        conn.close()


def _settings(**registry: Any) -> Settings:
    return Settings(registry={"health_interval": 0, "reload_surge": 1, **registry})


async def _query(resource: Any) -> Any:
    return await resource.fetchval("SELECT 1")


class Load:
    """Workers that query through ``registry.get`` as service code does, counting failures."""

    def __init__(self, registry: Registry, workers: int) -> None:
        self.registry = registry
        self.done = 0
        self.failures: list[str] = []
        self._running = True
        self._tasks = [asyncio.create_task(self._work()) for _ in range(workers)]

    async def _work(self) -> None:
        while self._running:
            try:
                await _query(self.registry.get("db"))
            except Exception as exc:  # every failure is what the test reports
                self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                self.done += 1
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._tasks)


class Peak:
    """The most server connections seen, sampled until stopped."""

    def __init__(self, count: Callable[[], Awaitable[int]]) -> None:
        self.count = count
        self.most = 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, await self.count())
            await asyncio.sleep(0.005)

    async def stop(self) -> int:
        self._stop.set()
        await self._task
        return self.most


async def test_a_reload_under_load_stays_within_the_surge_and_fails_no_query(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_text(server.manifest(3, 3))
    async with Registry(tmp_path, settings=_settings(close_grace=0.3)) as registry:
        await eventually(lambda: _is(server.count, 3), what="3 connections at start")
        load = Load(registry, workers=6)
        await eventually(lambda: load.done > 50, what="load running")
        peak = Peak(server.count)
        (tmp_path / "db.yaml").write_text(server.manifest(4, 4))
        result = await registry.reload()
        assert result.replaced == ["db"]
        await registry.wait_closed()
        await eventually(lambda: load.done > 200, what="load goes on after the reload")
        await load.stop()
        most = await peak.stop()
        new = registry.get("db")
        assert load.failures == []
        # Without the rule the two pools would hold 3 + 4 at once; with it, the old 3
        # plus a surge of 1, and the new pool's 4 once the old one has closed.
        assert most <= 4, f"{most} connections during the reload"
        await eventually(lambda: new.get_pool_stats()["size"] == 4, what="the new pool reaches its size")
        await eventually(lambda: _is(server.count, 4), what="4 server connections after the reload")


async def test_the_replaced_pool_closes_idle_and_released_connections_at_once(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_text(server.manifest(3, 3))
    # A grace long enough for the checks: the old version stays open (code that took it
    # may still use it), but keeps no idle connection meanwhile. (stop() waits it out.)
    async with Registry(tmp_path, settings=_settings(close_grace=8)) as registry:
        old = registry.get("db")
        async with old.acquire() as held:
            (tmp_path / "db.yaml").write_text(server.manifest(2, 2))
            await registry.reload()
            await eventually(lambda: _open(old) == 1, what="only the held connection left")
            await _query_on(held, server.kind)
        await eventually(lambda: _open(old) == 0, what="the released connection closed")
        assert await _query(old) == 1  # still serving whoever kept it, within close_grace
        await eventually(lambda: _open(old) == 0, what="and closed after use again")
        new = registry.get("db")
        await eventually(lambda: new.get_pool_stats()["size"] == 2, what="the new pool at its size")
        await eventually(lambda: _is(server.count, 2), what="2 server connections")


async def test_a_pool_moving_to_another_server_address_opens_in_full(server: Server, tmp_path: Path) -> None:
    """No budget between pools to different addresses: the old one's connections free nothing there."""
    (tmp_path / "db.yaml").write_text(server.manifest(3, 3))
    async with Registry(tmp_path, settings=_settings(close_grace=0.1)) as registry:
        other = server.manifest(3, 3).replace("127.0.0.1", "localhost")
        (tmp_path / "db.yaml").write_text(other)
        await registry.reload()
        assert registry.get("db").get_pool_stats()["size"] == 3


# ---- a change that keeps the connection arguments moves the connections over ------------------


async def test_a_pool_resize_under_load_moves_the_old_connections_to_the_new_pool(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_text(server.manifest(3, 3))
    async with Registry(tmp_path, settings=_settings(close_grace=0.3)) as registry:
        await eventually(lambda: _is(server.count, 3), what="3 connections at start")
        before = await server.ids()
        load = Load(registry, workers=6)
        await eventually(lambda: load.done > 50, what="load running")
        peak = Peak(server.count)
        (tmp_path / "db.yaml").write_text(server.manifest(4, 4))
        assert (await registry.reload()).replaced == ["db"]
        await registry.wait_closed()
        await eventually(lambda: load.done > 200, what="load goes on after the reload")
        await load.stop()
        most = await peak.stop()
        assert load.failures == []
        assert most <= 4, f"{most} connections during the reload"
        await eventually(lambda: _is(server.count, 4), what="4 server connections after the reload")
        after = await server.ids()
        # The new version proved itself on one connection of its own and took the old
        # version's three over: one connection opened on the server, none closed.
        assert before <= after, f"closed {sorted(before - after)}"
        assert len(after - before) == 1


async def test_a_pool_that_shrinks_keeps_what_it_needs_and_closes_the_rest(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "db.yaml").write_text(server.manifest(4, 4))
    async with Registry(tmp_path, settings=_settings(close_grace=0.1)) as registry:
        await eventually(lambda: _is(server.count, 4), what="4 connections at start")
        before = await server.ids()
        (tmp_path / "db.yaml").write_text(server.manifest(2, 2))
        await registry.reload()
        await registry.wait_closed()
        new = registry.get("db")
        assert await _query(new) == 1
        await eventually(lambda: _is(server.count, 2), what="2 server connections after the reload")
        assert len(await server.ids() & before) == 1  # one moved over beside the new version's own
        assert new.get_pool_stats()["size"] == 2


async def test_code_that_kept_the_old_version_is_served_after_its_connections_moved_over(
    server: Server, tmp_path: Path
) -> None:
    """A pool that grows leaves no token spare: the old version borrows one of the new one's back."""
    (tmp_path / "db.yaml").write_text(server.manifest(2, 2))
    async with Registry(tmp_path, settings=_settings(close_grace=4)) as registry:
        old = registry.get("db")
        await eventually(lambda: _is(server.count, 2), what="2 connections at start")
        (tmp_path / "db.yaml").write_text(server.manifest(3, 3))
        await registry.reload()
        new = registry.get("db")
        await eventually(lambda: _open(old) == 0, what="the old version's connections moved over")
        await eventually(lambda: new.get_pool_stats()["size"] == 3, what="the new pool at its size")
        assert await asyncio.wait_for(_query(old), 5) == 1
        assert await _query(new) == 1
        await eventually(lambda: new.get_pool_stats()["size"] == 3, what="the borrowed connection back")
        await eventually(lambda: _is(server.count, 3), what="3 server connections")


async def test_a_change_of_connection_arguments_opens_new_connections(server: Server, tmp_path: Path) -> None:
    """A connection moves over only where the driver would open it with the same arguments."""
    (tmp_path / "db.yaml").write_text(server.manifest(2, 2))
    async with Registry(tmp_path, settings=_settings(close_grace=0.1)) as registry:
        await eventually(lambda: _is(server.count, 2), what="2 connections at start")
        before = await server.ids()
        (tmp_path / "db.yaml").write_text(server.manifest(2, 2) + server.new_arguments)
        assert (await registry.reload()).replaced == ["db"]
        await registry.wait_closed()
        assert await _query(registry.get("db")) == 1
        await eventually(lambda: _is(server.count, 2), what="2 server connections after the reload")
        assert not await server.ids() & before


def _open(resource: Any) -> int:
    """Connections of a version that must still be running (not closed by its retirement yet)."""
    assert resource.state.value == "ready", "the old version closed before the check: raise close_grace"
    return int(resource.get_pool_stats()["size"])


async def _is(count: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await count() == expected


async def _query_on(conn: Any, kind: str) -> None:
    if kind == "postgresql":
        assert await conn.fetchval("SELECT 1") == 1
    else:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1 AS one")
            assert (await cur.fetchone())["one"] == 1


# ---- the budget and the gate on their own ------------------------------------------------------


async def test_a_budget_gives_tokens_as_connections_close_and_no_more_than_that() -> None:
    budget = ConnectionBudget(1, previous=object())
    assert budget.try_take()
    assert not budget.try_take()
    waiter = asyncio.create_task(budget.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.give()
    await asyncio.wait_for(waiter, 5)
    assert not budget.try_take()
    budget.lift()
    assert budget.try_take()  # lifted: no limit
    assert budget.try_take()


async def test_lifting_a_budget_wakes_every_waiter_and_runs_its_callbacks() -> None:
    budget = ConnectionBudget(0, previous=object())
    lifted: list[ConnectionBudget] = []
    budget.on_lift(lifted.append)
    waiters = [asyncio.create_task(budget.take()) for _ in range(3)]
    await asyncio.sleep(0)
    budget.lift()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert lifted == [budget]
    budget.on_lift(lifted.append)  # registered after the lift: called at once
    assert lifted == [budget, budget]


async def test_a_gate_lets_as_many_through_as_it_has_slots() -> None:
    gate = Gate(ConnectionBudget(0, previous=object()), slots=1)
    await gate.enter()
    second = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    assert not second.done()
    gate.leave()
    await asyncio.wait_for(second, 5)
    third = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    assert not third.done()
    gate.add_slot()
    await asyncio.wait_for(third, 5)
    assert gate.in_use == 2


async def test_a_waiter_cancelled_at_the_gate_takes_no_slot() -> None:
    gate = Gate(ConnectionBudget(0, previous=object()), slots=1)
    await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.in_use == 1


def test_the_driver_internals_the_rule_relies_on_are_still_there() -> None:
    """asyncpg and aiomysql expose no floor setter nor idle list: we name theirs (see _pg_pool, _mysql_pool)."""
    import aiomysql
    import asyncpg

    assert {"_holders", "_minsize", "_schedule_min_size_maintenance"} <= set(asyncpg.Pool.__slots__) | set(
        dir(asyncpg.Pool)
    )
    # Adoption moves an idle connection out of its holder (_pg_pool._detach_idle).
    holder = asyncpg.pool.PoolConnectionHolder
    assert {"_con", "_maybe_cancel_inactive_callback", "is_idle"} <= set(holder.__slots__) | set(dir(holder))
    assert "_pool_holder" in asyncpg.connection.Connection.__slots__
    assert "connect" in asyncpg.create_pool.__code__.co_varnames
    assert hasattr(aiomysql.Pool, "clear")
    assert "_minsize" in aiomysql.Pool.__init__.__code__.co_names
