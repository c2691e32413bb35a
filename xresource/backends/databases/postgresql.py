"""``postgresql``: PostgreSQL through an asyncpg connection pool."""

from __future__ import annotations

import builtins
import functools
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from xresource._optional import require
from xresource._transport.urls import UrlParts, parse_url
from xresource.backends.databases._base import (
    DatabaseResource,
    PoolRuntime,
    PoolStats,
    Release,
    SslMode,
    classify,
)
from xresource.backends.databases._handover import Gate, raw
from xresource.backends.databases._pg_errors import error_table
from xresource.backends.databases._pg_pool import (
    GatedPool,
    PgRuntime,
    grower,
    keeps_floor,
    offer_idle,
    open_connection,
    set_floor,
    shed_idle,
)
from xresource.backends.databases._transactions import (
    IsolationLevel,
    check_flag,
    check_isolation,
    pooled_transaction,
)
from xresource.backends.databases._url import reject_managed_options
from xresource.errors import (
    XResourceError,
)
from xresource.secrets import OptionsMap, SecretText, UrlText

__all__ = ["PostgresResource", "error_table"]

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from contextlib import AbstractAsyncContextManager, _AsyncGeneratorContextManager

    from asyncpg import Connection, Record

_SCHEMES = ("postgresql", "postgres")
# Keyword arguments of asyncpg.create_pool that the manifest's own fields set.
_MANAGED = {
    "dsn",
    "password",
    "min_size",
    "max_size",
    "timeout",
    "command_timeout",
    "ssl",
    "max_inactive_connection_lifetime",
    "connect",
    "init_size",
}

_TABLES_SQL = """
SELECT CASE WHEN table_schema = current_schema() THEN table_name
            ELSE table_schema || '.' || table_name END AS name
FROM information_schema.tables
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""


class PostgresResource(DatabaseResource):
    """A PostgreSQL database behind an asyncpg pool.

    Queries use PostgreSQL's ``$1, $2, ...`` placeholders and return asyncpg
    ``Record`` objects (mapping- and tuple-like; ``dict(row)`` gives a dict).
    ``fetch``/``fetchrow``/``fetchval``/``execute``/``executemany`` are thin
    wrappers over the pool's own methods: they cost what asyncpg costs, and
    like asyncpg they wait for a free connection without a limit (use
    ``acquire(timeout=...)`` for a bounded wait, ``command_timeout`` to bound
    queries). Driver errors come out as ``XResourceError`` subclasses with
    the asyncpg exception chained: bad SQL, constraint violations and missing
    privileges as ``XResourceQueryError`` subclasses carrying the SQLSTATE
    as ``code``, server and network failures as ``XResourceConnectionError``.

    The password goes either in the URL's user-info as a reference
    (``postgresql://app:${env:PW}@db:5432/app``) or in ``password``; the
    resolved value is handed to asyncpg separately from the URL, so it needs
    no URL escaping.
    """

    type: Literal["postgresql"] = "postgresql"
    example_name: ClassVar[str | None] = "user_db"
    default_port: ClassVar[int | None] = 5432
    install_extra: ClassVar[str | None] = "postgres"

    connection_string: UrlText = Field(examples=["postgresql://app:${env:DB_PASSWORD}@localhost:5432/app"])
    """``postgresql://user[:${env:PW}]@host[:port]/database[?param=value]``; libpq URL parameters are honoured."""
    password: SecretText | None = None
    """The password, as a reference, when the connection string does not carry one."""
    command_timeout: float | None = Field(default=None, gt=0)
    """Default timeout in seconds of each query (asyncpg ``command_timeout``); none by default."""
    max_inactive_connection_lifetime: float = Field(default=300.0, ge=0)
    """Seconds an idle pooled connection lives before it is closed (0 keeps it forever)."""
    application_name: str | None = None
    """Shown in ``pg_stat_activity``; defaults to ``xresource:<name>``."""
    sslmode: SslMode | None = None
    """TLS mode with libpq's meanings; ``verify-full`` when only ``ca_file`` is given, else asyncpg's ``prefer``."""
    ca_file: str | None = None
    """PEM file of the certificate authorities trusted to sign the server's certificate."""
    options: OptionsMap = Field(default_factory=dict)
    """Further keyword arguments for ``asyncpg.create_pool`` (e.g. ``statement_cache_size: 0`` behind pgbouncer)."""

    @field_validator("connection_string")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_url(value, _SCHEMES)
        return value

    @model_validator(mode="after")
    def _check_settings(self) -> PostgresResource:
        parts = self.url_parts()
        if parts.password and self.password:
            raise ValueError("give the password either in connection_string or in password, not both")
        for param, field_name in (("sslmode", "sslmode"), ("sslrootcert", "ca_file")):
            if param in parts.query and getattr(self, field_name) is not None:
                raise ValueError(
                    f"{param} is set both in connection_string and in {field_name}; keep one of them"
                )
        reject_managed_options(self.options, _MANAGED, "postgresql")
        return self

    def url_parts(self) -> UrlParts:
        return parse_url(self.connection_string, _SCHEMES)

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details.update(driver="asyncpg", sslmode=self._effective_sslmode())
        return details

    def _effective_sslmode(self) -> str | None:
        if self.sslmode is None and self.ca_file is not None:
            return "verify-full"
        return self.sslmode or self.url_parts().query.get("sslmode")

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        asyncpg = require("asyncpg", "postgres", type_name=self.type)
        parts = self.url_parts()
        dsn = parts.without_password
        if self.ca_file is not None:
            self.check_within_roots(self.ca_file, "ca_file")  # asyncpg opens it itself
            separator = "&" if "?" in dsn else "?"
            dsn += f"{separator}sslrootcert={quote(self.ca_file, safe='/')}"
        kwargs: dict[str, Any] = {
            "dsn": self.resolve(dsn),
            "min_size": self.min_pool_size,
            "max_size": self.max_pool_size,
            "timeout": self.connect_timeout,
            "command_timeout": self.command_timeout,
            "max_inactive_connection_lifetime": self.max_inactive_connection_lifetime,
        }
        password = parts.password or self.password
        if password:
            kwargs["password"] = self.resolve(password)
        sslmode = self._effective_sslmode()
        if self.sslmode is not None or self.ca_file is not None:
            kwargs["ssl"] = sslmode
        kwargs.update(self._resolve_options(self.options))
        server_settings = dict(kwargs.get("server_settings") or {})
        if "application_name" not in parts.query:
            server_settings.setdefault("application_name", self.application_name or f"xresource:{self.name}")
        if server_settings:
            kwargs["server_settings"] = server_settings

        # Every connection opens through our hook, which counts it while this version
        # replaces or is replaced by another (the surge rule, see _handover).
        rt = PgRuntime()
        counts = keeps_floor(asyncpg.Pool)
        kwargs["connect"] = functools.partial(open_connection, rt, counts, asyncpg.connect)
        budget = rt.budget = self._claim_budget()
        if budget is not None:
            # Open small (what proves it works), then grow as the old version gives back.
            opened = max(1, min(self.min_pool_size, budget.tokens))
            for _ in range(opened):
                budget.try_take()
            rt.paid = opened
            budget.taker = rt
            kwargs["min_size"] = opened
            rt.gate = Gate(budget, 0 if counts else opened)
        async with self._connect_deadline():
            pool = await asyncpg.create_pool(**kwargs)
            try:
                await pool.fetchval("SELECT 1")
            except BaseException:
                pool.terminate()
                raise
        rt.pool = pool
        if budget is not None and rt.gate is not None:
            rt.pool = GatedPool(pool, rt.gate)
            grow = grower(rt, pool, rt.gate, budget, self.max_pool_size, counts)
            budget.on_give(lambda: None if rt.shed is not None else grow())  # not once it drains itself
            grow()

            def restore() -> None:
                rt.pool = pool
                set_floor(pool, self.min_pool_size)

            self._when_lifted(rt, budget, restore)
        self._rt = rt
        self._log_connected()

    async def _disconnect(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            try:
                await self._close_bounded(rt.pool.close, rt.pool.terminate)
            finally:
                self._lift(rt)

    async def _shed_idle(self, rt: PoolRuntime) -> None:
        pool = raw(rt.pool)
        idle = pool.get_idle_size()
        if idle:
            handed = offer_idle(rt) if isinstance(rt, PgRuntime) else 0
            shed_idle(pool, keep=self._waiters(pool.get_size() - idle) + handed)

    def _stop_refilling(self, rt: PoolRuntime) -> None:
        set_floor(raw(rt.pool), 0)

    async def _validate_connection(self) -> bool:
        rt = self._rt
        if rt is None:
            return False
        pool = rt.pool
        return await self._round_trip(lambda: pool.fetchval("SELECT 1"))

    async def list_collections_or_tables(self) -> list[str]:
        """Tables and views visible to the user; other schemas than the current one as ``schema.table``."""
        rows = await self.fetch(_TABLES_SQL)
        return [row["name"] for row in rows]

    # ---- pool -----------------------------------------------------------------------------

    if TYPE_CHECKING:

        def acquire(self, timeout: float | None = None) -> _AsyncGeneratorContextManager[Connection]:
            """Borrow a pooled asyncpg ``Connection`` (see ``DatabaseResource.acquire``)."""

    def get_pool_stats(self) -> PoolStats:
        rt = self._rt
        if rt is None:
            return super().get_pool_stats()
        pool = rt.pool
        size = pool.get_size()
        idle = pool.get_idle_size()
        in_use = max(0, size - idle)
        return PoolStats(
            size=size, in_use=in_use, idle=idle, waiters=self._waiters(in_use), max=pool.get_max_size()
        )

    async def _checkout(self, rt: PoolRuntime) -> tuple[Any, Release]:
        pool = rt.pool
        conn = await pool.acquire()

        async def release() -> None:
            await pool.release(conn)

        return conn, release

    # ---- queries: the hot path. Keep these thin (see the module docstring of _base). ------

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Record]:
        """Run ``query`` and return all rows as asyncpg ``Record`` objects."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            rows: list[Record] = await rt.pool.fetch(query, *args, timeout=timeout)
            return rows
        except Exception as exc:
            raise self._op_error(exc, "fetch") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Record | None:
        """Run ``query`` and return its first row, or ``None``."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            return await rt.pool.fetchrow(query, *args, timeout=timeout)
        except Exception as exc:
            raise self._op_error(exc, "fetchrow") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        """Run ``query`` and return one value of its first row (``None`` when there is no row)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            return await rt.pool.fetchval(query, *args, column=column, timeout=timeout)
        except Exception as exc:
            raise self._op_error(exc, "fetchval") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a command; returns PostgreSQL's status text (e.g. ``"INSERT 0 1"``)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            status: str = await rt.pool.execute(query, *args, timeout=timeout)
            return status
        except Exception as exc:
            raise self._op_error(exc, "execute") from exc
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None:
        """Run a command once per argument tuple in ``args``, in one round of pipelined messages."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            await rt.pool.executemany(query, args, timeout=timeout)
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
        deferrable: bool = False,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[Any]:
        """A transaction on one pooled connection: ``async with db.transaction() as conn:``.

        ``conn`` is the asyncpg connection (``fetch``, ``execute``, ... as on the
        resource). The transaction commits when the block ends and rolls back
        when it raises or is cancelled; the connection always goes back to the
        pool. ``isolation`` is ``read_committed`` (PostgreSQL's default),
        ``repeatable_read``, ``serializable`` or ``read_uncommitted``;
        ``readonly`` refuses writes; ``deferrable`` (with ``serializable`` and
        ``readonly``) waits for a snapshot that cannot fail. ``timeout`` bounds
        the wait for a connection, as in ``acquire``.
        """
        level = check_isolation(self.label, isolation)
        ro = check_flag(self.label, "readonly", readonly)
        defer = check_flag(self.label, "deferrable", deferrable)

        async def begin(conn: Any) -> Any:
            handle = conn.transaction(isolation=level, readonly=ro, deferrable=defer)
            await handle.start()
            return handle

        return pooled_transaction(
            self, timeout=timeout, begin=begin, commit=_commit, rollback=_rollback, discard=_terminate
        )

    # ---- errors ---------------------------------------------------------------------------

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        return classify(error_table(), exc)

    def _error_code(self, exc: BaseException) -> str | None:
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate if isinstance(sqlstate, str) else None


async def _commit(handle: Any) -> None:
    await handle.commit()


async def _rollback(handle: Any) -> None:
    await handle.rollback()


def _terminate(conn: Any) -> None:
    """Close a connection at once; the pool replaces it and the server rolls back its transaction."""
    conn.terminate()
