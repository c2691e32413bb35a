"""``transaction()`` against the machine's PostgreSQL and MariaDB, and SecantusDB (MongoDB).

The SQL cases run once per backend through a small adapter (placeholders and
the way each server reports a transaction's characteristics differ); what a
transaction promises is the same: one pooled connection, commit on success,
rollback on an exception or a cancellation, the connection always returned.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.backends.db_contract import unique
from tests.support.mongo_server import SecantusServer, secantus
from tests.support.services import require_service
from tests.support.waiting import eventually
from xresource import Registry
from xresource.backends.databases._base import DatabaseResource
from xresource.backends.databases.mongodb import MongoResource
from xresource.backends.databases.mysql import MySQLResource
from xresource.backends.databases.postgresql import PostgresResource
from xresource.errors import (
    XResourceIntegrityError,
    XResourceStateError,
    XResourceUnsupportedError,
)

__all__ = ["secantus"]  # the fixture, imported for this module

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


@dataclass
class Sql:
    """How one SQL backend is driven by the shared cases."""

    name: str
    build: Callable[..., DatabaseResource]
    param: Callable[[int], str]  # the n-th placeholder: $1 or %s
    sleep: str  # a statement that runs for a long time
    activity: str  # counts other sessions running a statement that contains a marker (the argument)

    def sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders in this backend's style."""
        parts = text.split("?")
        return "".join(
            part + (self.param(i + 1) if i < len(parts) - 1 else "") for i, part in enumerate(parts)
        )


async def _pg_isolation(conn: Any) -> str:
    return str(await conn.fetchval("SHOW transaction_isolation")).replace(" ", "_")


def _pg(**fields: Any) -> DatabaseResource:
    return PostgresResource.model_validate(
        {"name": "pg_tx", "connection_string": PG_URL, "min_pool_size": 1, "max_pool_size": 3, **fields}
    )


def _mysql(**fields: Any) -> DatabaseResource:
    return MySQLResource.model_validate(
        {"name": "mysql_tx", "connection_string": MYSQL_URL, "min_pool_size": 1, "max_pool_size": 3, **fields}
    )


BACKENDS = {
    "postgresql": Sql(
        "postgresql",
        _pg,
        lambda n: f"${n}",
        "SELECT pg_sleep(30)",
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%'"
        " AND pid <> pg_backend_pid()",
    ),
    "mysql": Sql(
        "mysql",
        _mysql,
        lambda n: "%s",
        "SELECT SLEEP(30)",
        "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE CONCAT('%%', %s, '%%')"
        " AND id <> CONNECTION_ID()",
    ),
}
PORTS = {"postgresql": ("PostgreSQL", 5432), "mysql": ("MariaDB", 3306)}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Sql:
    name = request.param
    require_service(PORTS[name][0], "127.0.0.1", PORTS[name][1])
    return BACKENDS[name]


@pytest.fixture
async def db(backend: Sql) -> AsyncIterator[DatabaseResource]:
    res = backend.build()
    async with res:
        yield res


@pytest.fixture
async def table(db: DatabaseResource) -> AsyncIterator[str]:
    name = unique("tx")
    await db.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, note VARCHAR(40))")  # type: ignore[attr-defined]
    yield name
    await db.execute(f"DROP TABLE {name}")  # type: ignore[attr-defined]


def _equals(value: Callable[[], Awaitable[int]], expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await value() == expected

    return check


def idle(db: DatabaseResource) -> bool:
    stats = db.get_pool_stats()
    return stats["in_use"] == 0 and stats["waiters"] == 0


async def count(db: Any, table: str) -> int:
    return int(await db.fetchval(f"SELECT COUNT(*) FROM {table}"))


# ---- commit, rollback, cancellation ------------------------------------------------------------


async def test_commit_makes_the_writes_visible_only_at_the_end(backend: Sql, db: Any, table: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 1, "a")
        await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 2, "b")
        assert await count(conn, table) == 2
        assert await count(db, table) == 0  # another pooled connection sees nothing yet
    assert await count(db, table) == 2
    assert idle(db)


async def test_an_exception_rolls_back_and_comes_out_untouched(backend: Sql, db: Any, table: str) -> None:
    class Boom(Exception):
        pass

    async def insert_then_fail() -> None:
        async with db.transaction() as conn:
            await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 1, "a")
            raise Boom

    with pytest.raises(Boom):
        await insert_then_fail()
    assert await count(db, table) == 0
    assert idle(db)


async def test_a_failing_statement_rolls_back_the_earlier_ones(backend: Sql, db: Any, table: str) -> None:
    insert = backend.sql(f"INSERT INTO {table} VALUES (?, ?)")

    async def insert_twice() -> None:
        async with db.transaction() as conn:
            await conn.execute(insert, 1, "a")
            await conn.execute(insert, 1, "again")

    with pytest.raises(Exception, match=r"(?i)duplicate"):
        await insert_twice()
    assert await count(db, table) == 0
    assert idle(db)


async def test_cancelled_mid_query_rolls_back_and_returns_the_connection(
    backend: Sql, db: Any, table: str
) -> None:
    inserted = asyncio.Event()
    marker = unique("sleeper")

    async def work() -> None:
        async with db.transaction() as conn:
            await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 1, "a")
            inserted.set()
            await conn.execute(f"{backend.sleep} /* {marker} */")

    async def running() -> int:
        return int(await db.fetchval(backend.activity, marker))

    task = asyncio.create_task(work())
    await asyncio.wait_for(inserted.wait(), 10)
    await eventually(_equals(running, 1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)  # no hang: the long query does not have to finish
    assert await count(db, table) == 0
    await eventually(lambda: idle(db))
    await eventually(_equals(running, 0))  # the server stopped the statement (it would hold its locks)


async def test_cancelled_while_waiting_inside_the_block_rolls_back(backend: Sql, db: Any, table: str) -> None:
    inserted = asyncio.Event()

    async def work() -> None:
        async with db.transaction() as conn:
            await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 1, "a")
            inserted.set()
            await asyncio.Event().wait()  # never set: only the cancellation ends this

    task = asyncio.create_task(work())
    await asyncio.wait_for(inserted.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await count(db, table) == 0
    assert idle(db)
    # The connection came back usable.
    async with db.transaction() as conn:
        await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 2, "b")
    assert await count(db, table) == 1


async def test_an_outer_timeout_rolls_back(backend: Sql, db: Any, table: str) -> None:
    async def insert_then_wait() -> None:
        async with asyncio.timeout(0.5), db.transaction() as conn:
            await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), 1, "a")
            await conn.execute(backend.sleep)

    with pytest.raises(TimeoutError):
        await insert_then_wait()
    assert await count(db, table) == 0
    await eventually(lambda: idle(db))


async def test_more_transactions_than_connections_all_complete(backend: Sql, table: str) -> None:
    res: Any = backend.build(max_pool_size=2)
    async with res:

        async def one(i: int) -> None:
            async with res.transaction() as conn:
                await conn.execute(backend.sql(f"INSERT INTO {table} VALUES (?, ?)"), i, "x")

        await asyncio.gather(*(one(i) for i in range(20)))
        assert await count(res, table) == 20
        assert res.get_pool_stats()["size"] <= 2
        assert idle(res)


# ---- isolation and read-only ---------------------------------------------------------------------


@pytest.mark.parametrize("level", ["read_committed", "repeatable_read", "serializable"])
async def test_postgresql_applies_the_isolation_level(level: str) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    async with _pg(max_pool_size=1) as db:
        async with db.transaction(isolation=level) as conn:  # type: ignore[attr-defined]
            assert await _pg_isolation(conn) == level
        # The level was the transaction's only: the same (only) connection is back to the default.
        async with db.transaction() as conn:  # type: ignore[attr-defined]
            assert await _pg_isolation(conn) == "read_committed"


async def test_postgresql_readonly_refuses_writes_and_sql_spellings_are_accepted() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    db: Any = _pg(max_pool_size=1)
    async with db, db.transaction(isolation="REPEATABLE READ", readonly=True) as conn:
        assert await conn.fetchval("SHOW transaction_read_only") == "on"
        assert await _pg_isolation(conn) == "repeatable_read"
        with pytest.raises(Exception, match="read-only transaction"):
            await conn.execute("CREATE TEMP TABLE t_ro (id int)")


async def test_postgresql_a_failed_commit_raises_our_error_and_returns_the_connection() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = unique("tx_deferred")
    async with _pg(max_pool_size=1) as db:
        pg: Any = db
        await pg.execute(
            f"CREATE TABLE {name} (id int, CONSTRAINT {name}_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        try:
            with pytest.raises(XResourceIntegrityError, match="commit failed") as caught:
                async with pg.transaction() as conn:
                    await conn.execute(f"INSERT INTO {name} VALUES (1), (1)")  # checked at commit
            assert caught.value.__cause__ is not None
            assert getattr(caught.value.__cause__, "sqlstate", None) == "23505"
            assert idle(db)
            assert await count(pg, name) == 0
        finally:
            await pg.execute(f"DROP TABLE {name}")


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
async def test_mysql_serializable_takes_read_locks(table: str, backend: Sql, db: Any) -> None:
    """Under SERIALIZABLE InnoDB turns plain reads into shared-lock reads: a writer cannot get the row.

    MariaDB shows no per-transaction level (``@@tx_isolation`` is the session's, and
    ``information_schema.innodb_trx`` is a cache refreshed every 0.1 s), so the level
    is checked by its effect; the writer waits for no lock (``innodb_lock_wait_timeout = 0``).
    """
    await db.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    writer: Any = _mysql(max_pool_size=1, name="mysql_tx_writer")  # one connection: the SET sticks
    async with writer:
        await writer.execute("SET SESSION innodb_lock_wait_timeout = 0")
        async with db.transaction(isolation="repeatable_read") as conn:
            await conn.fetch(f"SELECT * FROM {table} WHERE id = 1")
            assert await writer.execute(f"UPDATE {table} SET note = 'b' WHERE id = 1") == 1
        async with db.transaction(isolation="serializable") as conn:
            await conn.fetch(f"SELECT * FROM {table} WHERE id = 1")
            with pytest.raises(Exception, match=r"(?i)lock wait timeout"):
                await writer.execute(f"UPDATE {table} SET note = 'c' WHERE id = 1")
        assert await writer.execute(f"UPDATE {table} SET note = 'c' WHERE id = 1") == 1  # released


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)
async def test_mysql_readonly_refuses_writes_for_that_transaction_only(table: str, backend: Sql) -> None:
    res: Any = _mysql(max_pool_size=1, name="mysql_tx_ro")
    async with res:
        with pytest.raises(Exception, match=r"(?i)read only transaction"):
            async with res.transaction(isolation="serializable", readonly=True) as conn:
                await conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
        # SET TRANSACTION applies to one transaction: the next on the same connection may write.
        async with res.transaction() as conn:
            assert await conn.execute(f"INSERT INTO {table} VALUES (1, 'a')") == 1
            assert await conn.fetchrow(f"SELECT note FROM {table}") == {"note": "a"}
            assert await conn.fetchval(f"SELECT id FROM {table}") == 1
        assert await count(res, table) == 1


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"isolation": "serialisable"}, ValueError, "did you mean 'serializable'"),
        ({"isolation": "serializable; DROP TABLE users"}, ValueError, "unknown isolation level"),
        ({"isolation": ""}, ValueError, "unknown isolation level"),
        ({"isolation": 3}, TypeError, "isolation must be a string"),
        ({"readonly": "false"}, TypeError, "readonly must be True or False"),
        ({"readonly": 1}, TypeError, "readonly must be True or False"),
    ],
)
def test_bad_options_fail_before_any_connection_is_taken(
    backend: Sql, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    res: Any = backend.build()  # not even connected: options are checked at the call
    with pytest.raises(error, match=message) as caught:
        res.transaction(**options)
    assert res.name in str(caught.value)


async def test_a_transaction_on_a_resource_that_is_not_connected(backend: Sql) -> None:
    res: Any = backend.build()
    with pytest.raises(XResourceStateError, match="not connected"):
        async with res.transaction():
            pass


# ---- through the registry ------------------------------------------------------------------------------


async def test_a_lease_and_a_transaction_in_one_statement(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    (tmp_path / "db.yaml").write_text(f"name: orders_db\ntype: postgresql\nconnection_string: {PG_URL}\n")
    name = unique("tx_reg")
    async with Registry(tmp_path) as registry:
        await registry.get("orders_db").execute(f"CREATE TABLE {name} (id int)")
        try:
            async with registry.lease("orders_db") as db, db.transaction(isolation="serializable") as conn:
                await conn.execute(f"INSERT INTO {name} VALUES (1)")
                assert await _pg_isolation(conn) == "serializable"
                assert registry.status()["orders_db"].leases == 1
            assert await count(registry.get("orders_db"), name) == 1
            assert registry.status()["orders_db"].leases == 0
        finally:
            await registry.get("orders_db").execute(f"DROP TABLE {name}")


# ---- MongoDB ---------------------------------------------------------------------------------------------


@pytest.fixture
async def mongo(secantus: SecantusServer) -> AsyncIterator[MongoResource]:
    res = MongoResource(
        name="mongo_tx", connection_string=secantus.url(f"tx_{uuid.uuid4().hex[:8]}"), max_pool_size=2
    )
    async with res:
        yield res


async def test_mongodb_commit_and_abort(mongo: MongoResource) -> None:
    items = mongo.get_collection("items")
    async with mongo.transaction(read_concern="snapshot", write_concern="majority") as session:
        await items.insert_one({"_id": 1}, session=session)
        assert await items.count_documents({}) == 0  # outside the transaction: not yet
    assert await items.count_documents({}) == 1

    async def insert_then_fail() -> None:
        async with mongo.transaction() as session:
            await items.insert_one({"_id": 2}, session=session)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        await insert_then_fail()
    assert await items.count_documents({}) == 1
    assert mongo.get_pool_stats()["waiters"] == 0


async def test_mongodb_cancellation_aborts(mongo: MongoResource) -> None:
    items = mongo.get_collection("items")
    inserted = asyncio.Event()

    async def work() -> None:
        async with mongo.transaction() as session:
            await items.insert_one({"_id": 1}, session=session)
            inserted.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await asyncio.wait_for(inserted.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await items.count_documents({}) == 0
    async with mongo.acquire(timeout=2), mongo.acquire(timeout=2):
        pass  # both lease slots came back


async def test_mongodb_standalone_says_transactions_are_unsupported() -> None:
    server = SecantusServer(standalone=True)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        async with MongoResource(name="mongo_single", connection_string=server.url(), max_pool_size=1) as res:
            with pytest.raises(XResourceUnsupportedError, match="standalone") as caught:
                async with res.transaction() as session:
                    await res.get_collection("items").insert_one({"_id": 1}, session=session)
            message = str(caught.value)
            assert "mongodb resource 'mongo_single'" in message
            assert "replica set" in message
            assert await res.get_collection("items").count_documents({}) == 0
            async with res.acquire(timeout=2):
                pass  # the lease came back
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"read_concern": "linearizable"}, "read_concern must be one of"),
        ({"write_concern": "all"}, "write_concern must be 'majority'"),
        ({"write_concern": -1}, "write_concern must be 'majority'"),
        ({"write_concern": True}, "write_concern must be 'majority'"),
        ({"max_commit_time": 0}, "more than 0"),
        ({"max_commit_time": "5"}, "number of seconds"),
    ],
)
def test_mongodb_bad_options(options: dict[str, Any], message: str) -> None:
    res = MongoResource(name="mongo_tx", connection_string="mongodb://127.0.0.1:1/db")
    with pytest.raises((ValueError, TypeError), match=message):
        res.transaction(**options)
