"""``postgresql``: PostgreSQL through an asyncpg connection pool."""

from __future__ import annotations

import builtins
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
)
from xresource.backends.databases._url import reject_managed_options
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceRequestError,
    XResourceTimeoutError,
)
from xresource.secrets import OptionsMap, SecretText, UrlText

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

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
    the asyncpg exception chained (``exc.__cause__.sqlstate``).

    The password goes either in the URL's user-info as a reference
    (``postgresql://app:${env:PW}@db:5432/app``) or in ``password``; the
    resolved value is handed to asyncpg separately from the URL, so it needs
    no URL escaping.
    """

    type: Literal["postgresql"] = "postgresql"
    default_port: ClassVar[int | None] = 5432
    install_extra: ClassVar[str | None] = "postgres"

    connection_string: UrlText
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

        async with self._connect_deadline():
            pool = await asyncpg.create_pool(**kwargs)
            try:
                await pool.fetchval("SELECT 1")
            except BaseException:
                pool.terminate()
                raise
        self._rt = PoolRuntime(pool)
        self._log_connected()

    async def _disconnect(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            await self._close_bounded(rt.pool.close, rt.pool.terminate)

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

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        """Run ``query`` and return all rows as asyncpg ``Record`` objects."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            return await rt.pool.fetch(query, *args, timeout=timeout)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._op_error(exc, "fetch") from exc
        finally:
            rt.inflight -= 1

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
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

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """Run a command; returns PostgreSQL's status text (e.g. ``"INSERT 0 1"``)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        rt.inflight += 1
        try:
            return await rt.pool.execute(query, *args, timeout=timeout)  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._op_error(exc, "execute") from exc
        finally:
            rt.inflight -= 1

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

    # ---- errors ---------------------------------------------------------------------------

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return _class_for_sqlstate(sqlstate)
        if isinstance(exc, TimeoutError):
            return XResourceTimeoutError
        if isinstance(exc, OSError):
            return XResourceConnectionError
        if "closed" in str(exc) and type(exc).__module__.startswith("asyncpg"):
            return XResourceConnectionError  # "connection was closed in the middle of operation"
        return XResourceRequestError


def _class_for_sqlstate(sqlstate: str) -> type[XResourceError]:
    """SQLSTATE classes: 28 auth, 08 connection, 57 operator intervention, 53 resources."""
    if sqlstate.startswith("28"):
        return XResourceAuthenticationError
    if sqlstate == "57014":  # query_canceled: statement_timeout or command_timeout
        return XResourceTimeoutError
    if sqlstate == "3D000" or sqlstate.startswith(("08", "57P", "53")):
        # 3D000: the database does not exist; the server's message says which.
        return XResourceConnectionError
    return XResourceRequestError
