"""``mysql``: MySQL and MariaDB through an aiomysql connection pool."""

from __future__ import annotations

import asyncio
import builtins
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from xresource._optional import require
from xresource._transport.tls import tls_context
from xresource._transport.urls import UrlParts, parse_url
from xresource.backends.databases._base import (
    DatabaseResource,
    PoolRuntime,
    PoolStats,
    Release,
)
from xresource.backends.databases._handover import raw
from xresource.backends.databases._mysql_connection import MySqlConnection, mysql_transaction
from xresource.backends.databases._mysql_errors import error_class, error_table, server_code
from xresource.backends.databases._mysql_pool import (
    MySqlRuntime,
    offer_idle,
    set_floor,
    shed_idle,
    start_growing,
    stop_growing,
)
from xresource.backends.databases._transactions import IsolationLevel
from xresource.backends.databases._url import reject_managed_options
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
)
from xresource.secrets import OptionsMap, SecretText, UrlText

__all__ = ["MySQLResource", "MySqlRuntime", "error_table"]

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from contextlib import AbstractAsyncContextManager, _AsyncGeneratorContextManager

    from aiomysql import Connection

_SCHEMES = ("mysql", "mariadb")
_URL_PARAMS = {"charset"}
_MANAGED = {
    "host",
    "port",
    "user",
    "password",
    "db",
    "minsize",
    "maxsize",
    "connect_timeout",
    "ssl",
    "autocommit",
    "charset",
    "pool_recycle",
    "cursorclass",
}

MySqlSslMode = Literal["disable", "require", "verify-ca", "verify-full"]


class MySQLResource(DatabaseResource):
    """A MySQL or MariaDB database behind an aiomysql pool.

    Queries use the driver's native ``%s`` placeholders (``"... WHERE id = %s"``),
    with the arguments passed after the query as with asyncpg; a query without
    arguments is sent as written, so a literal ``%`` needs no escaping there.
    ``fetch`` and ``fetchrow`` return ``dict`` rows, ``execute`` and
    ``executemany`` the number of affected rows. Connections run in autocommit
    mode by default; for a transaction use ``async with db.transaction() as conn:``.
    Like the driver, the convenience queries wait for a free connection without
    a limit; use ``acquire(timeout=...)`` for a bounded wait.

    The password goes in the URL's user-info as a reference
    (``mysql://app:${env:DB_PW}@db:3306/app``) or in ``password``; it is
    passed to aiomysql on its own, so it needs no URL escaping. With an
    ``sslmode`` other than ``disable``, connect fails when the server does not
    offer TLS (PyMySQL alone would quietly fall back to plain text).
    """

    if TYPE_CHECKING:
        _rt: MySqlRuntime | None

    type: Literal["mysql"] = "mysql"
    example_name: ClassVar[str | None] = "orders_db"
    default_port: ClassVar[int | None] = 3306
    install_extra: ClassVar[str | None] = "mysql"

    connection_string: UrlText = Field(examples=["mysql://app:${env:DB_PASSWORD}@localhost:3306/app"])
    """``mysql://user[:${env:PW}]@host[:port][/database][?charset=...]`` (``mariadb://`` works too)."""
    password: SecretText | None = None
    """The password, as a reference, when the connection string does not carry one."""
    charset: str = "utf8mb4"
    """Connection character set."""
    autocommit: bool = True
    """Commit each statement on its own (the convenience queries rely on it to persist writes)."""
    pool_recycle: float | None = Field(default=None, gt=0)
    """Close pooled connections older than this many seconds (below the server's ``wait_timeout``)."""
    sslmode: MySqlSslMode | None = None
    """TLS: ``require`` encrypts, ``verify-ca`` also checks the chain, ``verify-full`` also the host name."""
    ca_file: str | None = None
    """PEM file of the certificate authorities trusted to sign the server's certificate."""
    options: OptionsMap = Field(default_factory=dict)
    """Further keyword arguments for ``aiomysql.create_pool`` (e.g. ``init_command``, ``sql_mode``)."""

    @field_validator("connection_string")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = parse_url(value, _SCHEMES)
        if parts.host is None:
            raise ValueError("the connection string must name one host, e.g. mysql://app@db:3306/app")
        unknown = sorted(set(parts.query) - _URL_PARAMS)
        if unknown:
            raise ValueError(
                f"unsupported URL parameter(s) {', '.join(unknown)}; "
                f"supported: {', '.join(sorted(_URL_PARAMS))} (use the resource's fields or options)"
            )
        return value

    @model_validator(mode="after")
    def _check_settings(self) -> MySQLResource:
        if self.url_parts().password and self.password:
            raise ValueError("give the password either in connection_string or in password, not both")
        if self.ca_file is not None and self.sslmode == "disable":
            raise ValueError("ca_file is set but sslmode is 'disable'")
        reject_managed_options(self.options, _MANAGED, "mysql")
        return self

    def url_parts(self) -> UrlParts:
        return parse_url(self.connection_string, _SCHEMES)

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details.update(driver="aiomysql", sslmode=self._effective_sslmode())
        return details

    def _effective_sslmode(self) -> MySqlSslMode:
        if self.sslmode is None:
            return "verify-full" if self.ca_file is not None else "disable"
        return self.sslmode

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        aiomysql = require("aiomysql", "mysql", type_name=self.type)
        parts = self.url_parts()
        assert parts.host is not None  # checked by _check_url
        password = parts.password or self.password
        sslmode = self._effective_sslmode()
        kwargs: dict[str, Any] = {
            "host": self.resolve(parts.host),
            "port": parts.resolved_port(self.resolve, self.default_port),
            "user": self.resolve(parts.user) if parts.user else None,
            "password": self.resolve(password) if password else "",
            "db": self.resolve(parts.database) if parts.database else None,
            "minsize": self.min_pool_size,
            "maxsize": self.max_pool_size,
            "connect_timeout": self.connect_timeout,
            "autocommit": self.autocommit,
            "charset": parts.query.get("charset", self.charset),
            "pool_recycle": self.pool_recycle if self.pool_recycle is not None else -1,
            "cursorclass": aiomysql.DictCursor,
            "program_name": f"xresource:{self.name}",
        }
        if sslmode != "disable":
            kwargs["ssl"] = tls_context(sslmode, self.read_ca_file(self.ca_file))
        kwargs.update(self._resolve_options(self.options))

        budget = self._claim_budget()
        opened = 0
        if budget is not None:
            # Open small (what proves it works), then grow as the old version gives back.
            opened = max(1, min(self.min_pool_size, budget.tokens))
            for _ in range(opened):
                budget.try_take()
            kwargs["minsize"] = min(self.min_pool_size, opened)
        pool = None
        try:
            async with self._connect_deadline():
                pool = await aiomysql.create_pool(**kwargs)
                conn = await pool.acquire()
                try:
                    await conn.ping(reconnect=False)
                    if sslmode != "disable":
                        await self._check_tls(conn, aiomysql.Cursor, sslmode)
                finally:
                    await pool.release(conn)
        except BaseException:
            if pool is not None:
                pool.terminate()
                await pool.wait_closed()
            raise
        rt = MySqlRuntime(pool, aiomysql.Cursor)
        if budget is not None:
            start_growing(rt, budget, opened, self.max_pool_size, self.name)
            self._when_lifted(rt, budget, lambda: stop_growing(rt, self.min_pool_size))
        self._rt = rt
        self._log_connected()

    async def _check_tls(self, conn: Any, tuple_cursor: Any, sslmode: str) -> None:
        """Fail when the session is not encrypted.

        PyMySQL skips TLS without a word when the server's greeting does not
        offer it, so ``require`` would silently mean plain text. The first
        connection is checked here; later ones use the same settings.
        """
        cur = await conn.cursor(tuple_cursor)
        await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        row = await cur.fetchone()
        await cur.close()
        if not row or not row[1]:
            raise XResourceConnectionError(
                f"{self.label} at {self.target()}: the server does not offer TLS, "
                f"but sslmode is {sslmode!r}; enable TLS on the server or set sslmode: disable"
            )

    async def _disconnect(self) -> None:
        rt, self._rt = self._rt, None
        if rt is None:
            return
        if rt.grower is not None:
            rt.grower.cancel()
            await asyncio.gather(rt.grower, return_exceptions=True)
        pool = raw(rt.pool)

        async def graceful() -> None:
            pool.close()  # idle connections close now, busy ones when they come back
            await pool.wait_closed()

        async def force() -> None:
            pool.terminate()
            await pool.wait_closed()

        try:
            await self._close_bounded(graceful, force)
        finally:
            self._lift(rt)

    async def _shed_idle(self, rt: PoolRuntime) -> None:
        pool = raw(rt.pool)
        handed = offer_idle(rt) if isinstance(rt, MySqlRuntime) else 0  # the successor moves them over
        closed = await shed_idle(pool, self._waiters(pool.size - pool.freesize), keep=handed)
        if closed and rt.budget is not None:
            rt.budget.give(closed)

    def _stop_refilling(self, rt: PoolRuntime) -> None:
        set_floor(raw(rt.pool), 0)

    async def _validate_connection(self) -> bool:
        if self._rt is None:
            return False
        return await self._round_trip(lambda: self.fetchval("SELECT 1"))

    async def list_collections_or_tables(self) -> list[str]:
        """Tables of the connection's database, or ``schema.table`` of every user schema without one."""
        if self.url_parts().database:
            rows = await self.fetch("SHOW TABLES")
            return sorted(next(iter(row.values())) for row in rows)
        rows = await self.fetch(
            "SELECT CONCAT(table_schema, '.', table_name) AS name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
            "ORDER BY name"
        )
        return [row["name"] for row in rows]

    # ---- pool -----------------------------------------------------------------------------

    if TYPE_CHECKING:

        def acquire(self, timeout: float | None = None) -> _AsyncGeneratorContextManager[Connection]:
            """Borrow a pooled aiomysql ``Connection`` (see ``DatabaseResource.acquire``)."""

    def get_pool_stats(self) -> PoolStats:
        rt = self._rt
        if rt is None:
            return super().get_pool_stats()
        pool = rt.pool
        size = pool.size
        idle = pool.freesize
        in_use = max(0, size - idle)
        return PoolStats(size=size, in_use=in_use, idle=idle, waiters=self._waiters(in_use), max=pool.maxsize)

    async def _checkout(self, rt: PoolRuntime) -> tuple[Any, Release]:
        pool = rt.pool
        conn = await pool.acquire()

        async def release() -> None:
            await pool.release(conn)

        return conn, release

    # ---- queries: the hot path. Keep these thin (see the module docstring of _base). ------
    # pool.release() returns a task that wakes a waiter; awaiting it lets that waiter run
    # before this task asks for a connection again, which measured ~10% less CPU under load.

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Run ``query`` and return all rows as dicts."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            pool = rt.pool
            conn = await pool.acquire()
            try:
                cur = await conn.cursor()
                await cur.execute(query, args or None)
                rows: list[dict[str, Any]] = await cur.fetchall()
                await cur.close()
                return rows
            finally:
                await pool.release(conn)
        except Exception as exc:
            raise self._op_error(exc, "fetch") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        """Run ``query`` and return its first row as a dict, or ``None``."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            pool = rt.pool
            conn = await pool.acquire()
            try:
                cur = await conn.cursor()
                await cur.execute(query, args or None)
                row: dict[str, Any] | None = await cur.fetchone()
                await cur.close()
                return row
            finally:
                await pool.release(conn)
        except Exception as exc:
            raise self._op_error(exc, "fetchrow") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """Run ``query`` and return one value of its first row (``None`` when there is no row)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            pool = rt.pool
            conn = await pool.acquire()
            try:
                cur = await conn.cursor(rt.tuple_cursor)
                await cur.execute(query, args or None)
                row = await cur.fetchone()
                await cur.close()
                return None if row is None else row[column]
            finally:
                await pool.release(conn)
        except Exception as exc:
            raise self._op_error(exc, "fetchval") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def execute(self, query: str, *args: Any) -> int:
        """Run a statement; returns the number of affected rows."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            pool = rt.pool
            conn = await pool.acquire()
            try:
                cur = await conn.cursor(rt.tuple_cursor)
                count: int = await cur.execute(query, args or None)
                await cur.close()
                return count
            finally:
                await pool.release(conn)
        except Exception as exc:
            raise self._op_error(exc, "execute") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> int:
        """Run a statement once per argument tuple (multi-row ``INSERT ... VALUES`` are batched)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            pool = rt.pool
            conn = await pool.acquire()
            try:
                cur = await conn.cursor(rt.tuple_cursor)
                count: int = await cur.executemany(query, list(args))
                await cur.close()
                return count
            finally:
                await pool.release(conn)
        except Exception as exc:
            raise self._op_error(exc, "executemany") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    # ---- transactions ---------------------------------------------------------------------

    def transaction(
        self,
        *,
        isolation: IsolationLevel | str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[MySqlConnection]:
        """A transaction on one pooled connection: ``async with db.transaction() as conn:``.

        ``conn`` has the resource's query methods (``fetch``, ``execute``, ...)
        on that one connection, and ``conn.raw`` is the aiomysql connection. The
        transaction commits when the block ends and rolls back when it raises or
        is cancelled; the connection always goes back to the pool. ``isolation``
        (``read_uncommitted``, ``read_committed``, ``repeatable_read`` (InnoDB's
        default), ``serializable``) and ``readonly`` apply to this transaction
        only (``SET TRANSACTION``, then ``BEGIN``). ``timeout`` bounds the wait
        for a connection, as in ``acquire``.
        """
        return mysql_transaction(self, isolation=isolation, readonly=readonly, timeout=timeout)

    # ---- errors ---------------------------------------------------------------------------

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        return error_class(exc)

    def _error_code(self, exc: BaseException) -> int | None:
        return server_code(exc)
