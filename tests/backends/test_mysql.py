"""``mysql`` against the machine's MariaDB (root without password, plus a user made per module)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymysql
import pytest
from pydantic import ValidationError

from tests.backends.db_contract import DatabaseContract, Make, run_with_sampling, unique
from tests.support.services import require_service
from xresource.backends.databases.mysql import MySQLResource
from xresource.errors import (
    XResourceConnectionError,
    XResourceIntegrityError,
    XResourceQueryError,
    XResourceSyntaxError,
)

MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


def _root() -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True)


@pytest.fixture(scope="module")
def mysql_user() -> Iterator[tuple[str, str]]:
    """A user with a password (root has none), dropped after the module: ``(user, password)``."""
    require_service("MariaDB", "127.0.0.1", 3306)
    user = unique("xru")
    password = "my" + uuid.uuid4().hex
    with _root() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        cur.execute(f"GRANT ALL PRIVILEGES ON test.* TO `{user}`@'%'")
    try:
        yield user, password
    finally:
        with _root() as conn, conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    require_service("MariaDB", "127.0.0.1", 3306)
    made: list[MySQLResource] = []

    def build(**overrides: Any) -> MySQLResource:
        fields = {
            "name": "my_test",
            "connection_string": MYSQL_URL,
            "min_pool_size": 1,
            "max_pool_size": 5,
            "connect_timeout": 5,
            **overrides,
        }
        res = MySQLResource.model_validate(fields)
        made.append(res)
        return res

    yield build
    for res in made:
        await res.disconnect()


@pytest.fixture
def user_url(mysql_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A connection string logging in as the module's user, its password from the environment."""
    user, password = mysql_user
    monkeypatch.setenv("XR_TEST_MYSQL_PW", password)
    return f"mysql://{user}:${{env:XR_TEST_MYSQL_PW}}@127.0.0.1:3306/test"


class TestMySQLContract(DatabaseContract):
    resource_class = MySQLResource
    base_fields = {"name": "shop", "connection_string": "mysql://app@db.internal:3306/shop"}

    @pytest.fixture
    def secret_case(self, make: Make, user_url: str, mysql_user: tuple[str, str]) -> tuple[Any, str]:
        return make(name="my_secret", connection_string=user_url), mysql_user[1]

    @pytest.fixture
    def wrong_password(
        self, make: Make, mysql_user: tuple[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Any, str]:
        secret = "wrong" + uuid.uuid4().hex
        monkeypatch.setenv("XR_TEST_MYSQL_WRONG", secret)
        res = make(
            name="my_wrong",
            connection_string=f"mysql://{mysql_user[0]}@127.0.0.1:3306/test",
            password="${env:XR_TEST_MYSQL_WRONG}",
        )
        return res, secret

    def url_for(self, host: str, port: int) -> str:
        return f"mysql://root@{host}:{port}/test"

    def missing_database(self, make: Make) -> Any:
        return make(connection_string=f"mysql://root@127.0.0.1:3306/{unique('missing')}")

    async def ping(self, res: MySQLResource) -> object:
        assert await res.fetchval("SELECT 1") == 1
        return True

    async def make_table(self, res: MySQLResource, name: str) -> None:
        await res.execute(f"CREATE TABLE {name} (id int)")

    async def drop_table(self, res: MySQLResource, name: str) -> None:
        await res.execute(f"DROP TABLE {name}")

    async def bad_syntax(self, res: MySQLResource) -> None:
        await res.fetch("SELEC 1")

    async def insert_twice(self, res: MySQLResource, table: str) -> None:
        await res.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
        await res.execute(f"INSERT INTO {table} VALUES (1)")
        await res.execute(f"INSERT INTO {table} VALUES (1)")

    async def provoke_error(self, res: MySQLResource, text: str) -> None:
        await res.fetch(f"SELECT `{text}`")  # Unknown column '<text>' in 'field list'

    def slow_query(self, res: MySQLResource, seconds: float) -> Any:
        return res.fetchval("SELECT SLEEP(%s)", seconds)


async def test_round_trip_with_native_placeholders_and_dict_rows(make: Make) -> None:
    table = unique("my_rt")
    async with make() as res:
        assert isinstance(res, MySQLResource)
        await res.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name varchar(20))")
        try:
            assert await res.execute(f"INSERT INTO {table} VALUES (%s, %s)", 1, "ada") == 1
            count = await res.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(2, "bob"), (3, "c%y")])
            assert count == 2
            rows = await res.fetch(f"SELECT id, name FROM {table} WHERE id >= %s ORDER BY id", 2)
            assert rows == [{"id": 2, "name": "bob"}, {"id": 3, "name": "c%y"}]
            assert await res.fetchrow(f"SELECT name FROM {table} WHERE id = %s", 1) == {"name": "ada"}
            assert await res.fetchrow(f"SELECT name FROM {table} WHERE id = %s", 99) is None
            assert await res.fetchval(f"SELECT COUNT(*) FROM {table}") == 3
            assert await res.fetchval(f"SELECT id, name FROM {table} WHERE id = 2", column=1) == "bob"
            assert await res.fetchval(f"SELECT id FROM {table} WHERE id = 99") is None
            # Without arguments the query is sent as written: '%' needs no escaping.
            assert await res.fetchval(f"SELECT COUNT(*) FROM {table} WHERE name LIKE 'c%'") == 1
            assert await res.fetchval(f"SELECT COUNT(*) FROM {table} WHERE name LIKE %s", "%y") == 1
            # Arguments are escaped by the driver, never pasted into the SQL.
            hostile = "x'); DROP TABLE " + table + "; --"
            assert await res.fetchval(f"SELECT COUNT(*) FROM {table} WHERE name = %s", hostile) == 0
            assert await res.execute(f"UPDATE {table} SET name = %s WHERE id > %s", "z", 1) == 2
        finally:
            await res.execute(f"DROP TABLE {table}")


async def _insert_then_fail(res: MySQLResource, table: str) -> None:
    async with res.acquire() as conn:
        await conn.begin()
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"INSERT INTO {table} VALUES (1)")
            raise RuntimeError("abort")
        finally:
            await conn.rollback()


async def test_transaction_on_an_acquired_connection(make: Make) -> None:
    table = unique("my_tx")
    async with make() as res:
        assert isinstance(res, MySQLResource)
        await res.execute(f"CREATE TABLE {table} (id int) ENGINE=InnoDB")
        try:
            with pytest.raises(RuntimeError, match="abort"):
                await _insert_then_fail(res, table)
            assert await res.fetchval(f"SELECT COUNT(*) FROM {table}") == 0
            await res.execute(f"INSERT INTO {table} VALUES (2)")  # autocommit: visible everywhere
            with _root() as conn, conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                assert cur.fetchone() == (1,)
        finally:
            await res.execute(f"DROP TABLE {table}")


async def test_query_errors_carry_the_error_number(make: Make) -> None:
    table = unique("my_err")
    async with make() as res:
        with pytest.raises(XResourceSyntaxError) as info:
            await res.fetch("SELEC 1")
        assert info.value.__cause__.args[0] == 1064  # type: ignore[union-attr]
        assert info.value.code == 1064
        assert "127.0.0.1:3306" in str(info.value)
        with pytest.raises(XResourceSyntaxError) as info:
            await res.fetch("SELECT no_such_column FROM DUAL")  # PyMySQL files 1054 under OperationalError
        assert info.value.code == 1054
        await res.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL)")
        try:
            await res.execute(f"INSERT INTO {table} VALUES (1, 1)")
            with pytest.raises(XResourceIntegrityError, match="Duplicate"):
                await res.execute(f"INSERT INTO {table} VALUES (1, 1)")
            with pytest.raises(XResourceIntegrityError):
                await res.execute(f"INSERT INTO {table} VALUES (2, NULL)")
            with pytest.raises(XResourceQueryError) as query:
                await res.fetch("SELECT %s, %s", 1)  # too few arguments
            assert not isinstance(query.value, XResourceConnectionError)
        finally:
            await res.execute(f"DROP TABLE {table}")
        assert await res.fetchval("SELECT 2") == 2


async def test_500_concurrent_queries_never_use_more_than_max_pool_size(
    make: Make, user_url: str, mysql_user: tuple[str, str]
) -> None:
    user = mysql_user[0]
    res = make(connection_string=user_url, min_pool_size=0, max_pool_size=5)
    assert isinstance(res, MySQLResource)
    await res.connect()
    observer = _root()
    try:
        client_side: list[dict[str, int]] = []

        def sample() -> int:
            client_side.append(dict(res.get_pool_stats()))
            with observer.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
                row = cur.fetchone()
            return int(row[0]) if row else 0

        jobs = [res.fetchval("SELECT %s + SLEEP(0.002)", i) for i in range(500)]
        results, samples = await run_with_sampling(jobs, sample, every=0.02)
        assert results == list(range(500))
        assert samples
        assert max(samples) <= 5
        assert max(s["in_use"] for s in client_side) <= 5
        assert max(s["in_use"] for s in client_side) >= 2  # the load really ran in parallel
        assert max(s["waiters"] for s in client_side) > 0  # and queued for the pool
    finally:
        observer.close()
        await res.disconnect()


async def test_tls_required_but_not_offered_is_refused(make: Make) -> None:
    # The machine's MariaDB has TLS off; PyMySQL would quietly fall back to plain text.
    res = make(sslmode="require", connect_timeout=5)
    start = time.monotonic()
    with pytest.raises(XResourceConnectionError, match="does not offer TLS") as info:
        await res.connect()
    assert time.monotonic() - start < 5
    assert "127.0.0.1:3306" in str(info.value)
    assert res.get_pool_stats()["size"] == 0


def test_url_parameters_and_options_are_checked() -> None:
    MySQLResource(name="x", connection_string="mysql://root@127.0.0.1/test?charset=latin1")
    with pytest.raises(ValidationError, match="unsupported URL parameter"):
        MySQLResource(name="x", connection_string="mysql://root@127.0.0.1/test?ssl=true")
    with pytest.raises(ValidationError, match="maxsize"):
        MySQLResource(name="x", connection_string=MYSQL_URL, options={"maxsize": 50})
    with pytest.raises(ValidationError, match="one host"):
        MySQLResource(name="x", connection_string="mysql://root@a:3306,b:3306/test")


async def test_charset_from_the_url(make: Make) -> None:
    async with make(connection_string=MYSQL_URL + "?charset=latin1") as res:
        assert await res.fetchval("SELECT @@character_set_client") == "latin1"
