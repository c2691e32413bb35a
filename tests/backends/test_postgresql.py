"""``postgresql`` against the machine's PostgreSQL and a private cluster (password, TLS, crash)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from tests.backends.db_contract import DatabaseContract, Make, run_with_sampling, unique
from tests.support.pg_server import PrivatePostgres, private_pg
from tests.support.services import require_service
from tests.support.waiting import SLACK, eventually
from xresource.backends.databases.postgresql import PostgresResource
from xresource.errors import (
    XResourceConnectionError,
    XResourceQueryError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)
from xresource.resource import State

__all__ = ["private_pg"]  # the fixture, imported for this module

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def shared_pg() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)


@pytest.fixture
async def make(shared_pg: None) -> AsyncIterator[Make]:
    """Resources on the shared server; whatever a test leaves connected is closed after it."""
    made: list[PostgresResource] = []

    def build(**overrides: Any) -> PostgresResource:
        fields = {
            "name": "pg_test",
            "connection_string": PG_URL,
            "min_pool_size": 1,
            "max_pool_size": 5,
            "connect_timeout": 5,
            **overrides,
        }
        res = PostgresResource.model_validate(fields)
        made.append(res)
        return res

    yield build
    for res in made:
        await res.disconnect()


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch, private_pg: PrivatePostgres) -> str:
    """The private cluster's password in a fresh environment variable; returns the variable's name."""
    name = f"XR_TEST_PG_PW_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(name, private_pg.password)
    return name


@pytest.fixture
async def private(private_pg: PrivatePostgres, password_env: str) -> AsyncIterator[Make]:
    """Resources on the private cluster, logging in with the password from the environment."""
    made: list[PostgresResource] = []

    def build(**overrides: Any) -> PostgresResource:
        fields = {
            "name": "pg_private",
            "connection_string": private_pg.url(password=f"${{env:{password_env}}}"),
            "min_pool_size": 1,
            "max_pool_size": 3,
            "connect_timeout": 5,
            **overrides,
        }
        res = PostgresResource.model_validate(fields)
        made.append(res)
        return res

    yield build
    for res in made:
        await res.disconnect()


class TestPostgresContract(DatabaseContract):
    resource_class = PostgresResource
    base_fields = {"name": "orders", "connection_string": "postgresql://app@db.internal:5432/app"}

    @pytest.fixture
    def secret_case(self, private: Make, private_pg: PrivatePostgres) -> tuple[PostgresResource, str]:
        res = private()
        assert isinstance(res, PostgresResource)
        return res, private_pg.password

    @pytest.fixture
    def wrong_password(
        self, private_pg: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[PostgresResource, str]:
        secret = "wrong" + uuid.uuid4().hex
        monkeypatch.setenv("XR_TEST_PG_WRONG", secret)
        res = PostgresResource(
            name="pg_wrong",
            connection_string=private_pg.url(),
            password="${env:XR_TEST_PG_WRONG}",
            connect_timeout=5,
        )
        return res, secret

    def url_for(self, host: str, port: int) -> str:
        return f"postgresql://postgres@{host}:{port}/test"

    def missing_database(self, make: Make) -> PostgresResource | None:
        res = make(connection_string=f"postgresql://postgres@127.0.0.1:5432/{unique('missing')}")
        assert isinstance(res, PostgresResource)
        return res

    async def ping(self, res: PostgresResource) -> object:
        assert await res.fetchval("SELECT 1") == 1
        return True

    async def make_table(self, res: PostgresResource, name: str) -> None:
        await res.execute(f"CREATE TABLE {name} (id int)")

    async def drop_table(self, res: PostgresResource, name: str) -> None:
        await res.execute(f"DROP TABLE {name}")

    async def bad_syntax(self, res: PostgresResource) -> None:
        await res.fetch("SELEC 1")

    async def insert_twice(self, res: PostgresResource, table: str) -> None:
        await res.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
        await res.execute(f"INSERT INTO {table} VALUES (1)")
        await res.execute(f"INSERT INTO {table} VALUES (1)")

    async def provoke_error(self, res: PostgresResource, text: str) -> None:
        await res.fetch(f'SELECT "{text}"')  # column "<text>" does not exist

    def slow_query(self, res: PostgresResource, seconds: float) -> Any:
        return res.fetchval("SELECT pg_sleep($1)", seconds)


# ---- queries ------------------------------------------------------------------------------


async def test_round_trip(make: Make) -> None:
    table = unique("pg_rt")
    async with make() as res:
        assert isinstance(res, PostgresResource)
        assert await res.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)") == "CREATE TABLE"
        try:
            assert await res.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "ada") == "INSERT 0 1"
            await res.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(2, "bob"), (3, "cy")])
            rows = await res.fetch(f"SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id", 2)
            assert [dict(r) for r in rows] == [{"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}]
            row = await res.fetchrow(f"SELECT name FROM {table} WHERE id = $1", 1)
            assert row is not None
            assert row["name"] == "ada"
            assert await res.fetchrow(f"SELECT name FROM {table} WHERE id = $1", 99) is None
            assert await res.fetchval(f"SELECT count(*) FROM {table}") == 3
            assert await res.fetchval(f"SELECT id, name FROM {table} WHERE id = 3", column=1) == "cy"
            # A transaction on an acquired connection rolls back as a unit.
            with pytest.raises(RuntimeError, match="abort"):
                await _delete_all_then_fail(res, table)
            assert await res.fetchval(f"SELECT count(*) FROM {table}") == 3
        finally:
            await res.execute(f"DROP TABLE {table}")


async def _delete_all_then_fail(res: PostgresResource, table: str) -> None:
    async with res.acquire() as conn, conn.transaction():
        await conn.execute(f"DELETE FROM {table}")
        raise RuntimeError("abort")


async def test_query_errors_carry_the_sqlstate_with_the_driver_error_chained(make: Make) -> None:
    async with make() as res:
        with pytest.raises(XResourceSyntaxError) as info:
            await res.fetch("SELEC 1")
        assert info.value.__cause__.sqlstate == "42601"  # type: ignore[union-attr]
        assert info.value.code == "42601"
        assert "pg_test" in str(info.value)
        assert "127.0.0.1:5432" in str(info.value)
        with pytest.raises(XResourceSyntaxError) as info:
            await res.fetch(f"SELECT * FROM {unique('missing')}")
        assert info.value.code == "42P01"  # undefined_table
        with pytest.raises(XResourceQueryError, match="argument"):
            await res.fetchval("SELECT $1::int")  # one argument expected, none given
        with pytest.raises(XResourceQueryError):
            await res.fetchval("SELECT $1::int", "not a number")
        with pytest.raises(XResourceQueryError) as info:
            await res.fetchval("SELECT 1 / 0")
        assert info.value.code == "22012"  # division_by_zero: a data error, not a connection error
        assert not isinstance(info.value, XResourceConnectionError)
        assert await res.fetchval("SELECT 2") == 2  # the pool is fine afterwards


async def test_command_timeout_is_a_timeout_error(make: Make) -> None:
    async with make(command_timeout=0.2) as res:
        start = time.monotonic()
        with pytest.raises(XResourceTimeoutError):
            await res.fetchval("SELECT pg_sleep(3)")
        assert time.monotonic() - start < 0.2 + SLACK
        assert await res.fetchval("SELECT 1") == 1


async def test_min_pool_size_and_application_name(make: Make) -> None:
    app = unique("xr_app")
    async with make(min_pool_size=3, max_pool_size=4, application_name=app) as res:
        stats = res.get_pool_stats()
        assert stats["size"] == 3
        assert stats["max"] == 4
        count = await res.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)
        assert count == 3


async def test_500_concurrent_queries_never_use_more_than_max_pool_size(make: Make) -> None:
    app = unique("xr_conc")
    res = make(min_pool_size=0, max_pool_size=5, application_name=app)
    assert isinstance(res, PostgresResource)
    await res.connect()
    observer = await asyncpg.connect(PG_URL)
    try:

        async def server_side() -> int:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            return int(await observer.fetchval(sql, app))

        client_side: list[dict[str, int]] = []

        async def sample() -> int:
            client_side.append(dict(res.get_pool_stats()))
            return await server_side()

        jobs = [res.fetchval("SELECT $1::int FROM pg_sleep(0.002)", i) for i in range(500)]
        results, samples = await run_with_sampling(jobs, sample)
        assert results == list(range(500))
        assert samples
        assert max(samples) <= 5
        assert max(samples) >= 2  # the load really ran in parallel
        assert max(s["in_use"] for s in client_side) <= 5
        assert max(s["waiters"] for s in client_side) > 0  # and queued for the pool
        assert res.get_pool_stats()["waiters"] == 0
    finally:
        await observer.close()
        await res.disconnect()


def test_options_cannot_override_fields() -> None:
    with pytest.raises(ValidationError, match="max_size"):
        PostgresResource(name="x", connection_string=PG_URL, options={"max_size": 50})
    with pytest.raises(ValidationError, match="sslmode"):
        PostgresResource(name="x", connection_string=PG_URL + "?sslmode=require", sslmode="disable")


async def test_driver_options_pass_through(make: Make) -> None:
    async with make(options={"statement_cache_size": 0}) as res:
        assert await res.fetchval("SELECT 41 + $1::int", 1) == 42


# ---- the private cluster: passwords, TLS, a crash ------------------------------------------


async def test_password_from_a_file_reference(
    private_pg: PrivatePostgres, tmp_path: Any, shared_pg: None
) -> None:
    secret_file = tmp_path / "pg-password"
    secret_file.write_text(private_pg.password + "\n")
    res = PostgresResource(
        name="pg_file", connection_string=private_pg.url(), password=f"${{file:{secret_file}}}"
    )
    async with res:
        assert await res.fetchval("SELECT current_user") == "postgres"


async def test_tls_verify_full_with_the_servers_ca(private: Make, private_pg: PrivatePostgres) -> None:
    ssl_sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    async with private(sslmode="verify-full", ca_file=str(private_pg.ca_file)) as res:
        assert await res.fetchval(ssl_sql) is True
        assert res.get_metadata()["sslmode"] == "verify-full"
    async with private(ca_file=str(private_pg.ca_file)) as res:  # a CA file alone means verify-full
        assert await res.fetchval(ssl_sql) is True
    async with private(sslmode="disable") as res:
        assert await res.fetchval(ssl_sql) is False


async def test_tls_with_an_unknown_ca_is_refused(private: Make, private_pg: PrivatePostgres) -> None:
    res = private(sslmode="verify-full", ca_file=str(private_pg.other_ca_file))
    with pytest.raises(XResourceConnectionError, match="certificate") as info:
        await res.connect()
    assert type(info.value) is XResourceConnectionError
    assert f"127.0.0.1:{private_pg.port}" in str(info.value)


async def test_recovers_by_itself_after_the_server_crashes(
    private: Make, private_pg: PrivatePostgres
) -> None:
    res = private(min_pool_size=2, max_pool_size=3, connect_timeout=1.0)
    assert isinstance(res, PostgresResource)
    await res.connect()
    assert await res.fetchval("SELECT 1") == 1
    private_pg.stop("immediate")
    try:
        start = time.monotonic()
        assert not await res.validate_connection()
        assert time.monotonic() - start < 1.0 + SLACK
        assert res.last_error
        assert f"127.0.0.1:{private_pg.port}" in res.last_error
        with pytest.raises(XResourceConnectionError) as info:
            await res.fetchval("SELECT 1")
        assert private_pg.password not in str(info.value)
        assert res.state is State.READY  # still in service: it heals when the server returns
    finally:
        private_pg.start()
    await eventually(res.validate_connection, timeout=15)
    results = await asyncio.gather(*(res.fetchval("SELECT $1::int", i) for i in range(20)))
    assert results == list(range(20))
    assert res.get_pool_stats()["size"] <= 3
