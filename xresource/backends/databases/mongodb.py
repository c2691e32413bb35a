"""``mongodb``: MongoDB through PyMongo's native asyncio client.

Motor, which earlier sketches of xresource used, is deprecated upstream in
favour of ``pymongo.AsyncMongoClient`` (PyMongo 4.13+); this backend uses the
successor and accepts Motor-era option names for the fields that differ.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from xresource._optional import require
from xresource._transport.urls import UrlParts, parse_url
from xresource.backends.databases._base import (
    DatabaseResource,
    PoolRuntime,
    PoolStats,
    Release,
)
from xresource.backends.databases._mongo_errors import error_class, error_table, says_refused
from xresource.backends.databases._mongo_options import MOTOR_ALIASES, motor_alias_schema, motor_names
from xresource.backends.databases._mongo_transactions import (
    MongoReadConcern,
    MongoWriteConcern,
    abort,
    commit,
    transaction_options,
    transactions_unsupported,
)
from xresource.backends.databases._transactions import pooled_transaction
from xresource.backends.databases._url import reject_managed_options
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceTimeoutError,
    XResourceUnsupportedError,
)
from xresource.secrets import OptionsMap, SecretText, UrlText
from xresource.telemetry.mongo import add_command_tracing

__all__ = ["MOTOR_ALIASES", "MongoResource", "MongoRuntime", "error_table"]

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager, _AsyncGeneratorContextManager

    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.asynchronous.mongo_client import AsyncMongoClient

_SCHEMES = ("mongodb", "mongodb+srv")
_COLLECTION_CACHE_LIMIT = 1024

# Client options our fields set; in the URL or in ``options`` they would silently fight the fields.
_MANAGED = {
    "maxpoolsize",
    "minpoolsize",
    "maxidletimems",
    "connecttimeoutms",
    "serverselectiontimeoutms",
    "waitqueuetimeoutms",
    "tls",
    "ssl",
    "tlscafile",
    "password",
}


class MongoRuntime(PoolRuntime):
    """The client plus what only MongoDB needs: the database, cached collections, lease slots.

    PyMongo hands out sessions, not connections, so ``acquire()`` leases one of
    ``max_pool_size`` slots of a semaphore.
    """

    __slots__ = ("collections", "db", "lease_waiting", "leases")
    if TYPE_CHECKING:
        pool: AsyncMongoClient[Any]

    def __init__(self, client: Any, db: AsyncDatabase[Any], max_leases: int) -> None:
        super().__init__(client)
        self.db = db
        self.collections: dict[str, AsyncCollection[Any]] = {}
        self.leases = asyncio.Semaphore(max_leases)
        self.lease_waiting = 0


class MongoResource(DatabaseResource):
    """A MongoDB database through ``pymongo.AsyncMongoClient``.

    ``db`` is the ``AsyncDatabase`` and ``get_collection(name)`` an
    ``AsyncCollection``: queries go straight to PyMongo, so they cost what
    PyMongo costs, and their exceptions are PyMongo's own (wrap a block in
    ``async with res.translate_errors("op"):`` to get ``XResourceError``
    subclasses). The resource's own operations (connect, validation,
    listing, ``acquire``) raise ``XResourceError`` subclasses.

    Pool: ``max_pool_size`` bounds the connections to each server, and every
    operation waits at most ``acquire_timeout`` for one (PyMongo's
    ``waitQueueTimeoutMS``), then fails with ``XResourcePoolExhaustedError``
    once translated. ``acquire()`` yields an ``AsyncClientSession`` (pass it as
    ``session=`` for causal consistency or a transaction); PyMongo does not
    hand out raw connections, so a lease is one of ``max_pool_size`` slots and
    ``acquire(timeout=...)`` raises ``XResourcePoolExhaustedError`` when no
    slot frees up in time.

    Motor-era names are accepted for fields whose names differ:
    ``maxPoolSize``, ``minPoolSize``, ``maxIdleTimeMS``, ``tlsCAFile``, and
    ``connectTimeoutMS`` / ``waitQueueTimeoutMS`` (milliseconds, converted to
    our seconds). MongoDB creates databases on first write, so an unknown
    ``database`` is not an error.
    """

    model_config = ConfigDict(json_schema_extra=motor_alias_schema)

    if TYPE_CHECKING:
        _rt: MongoRuntime | None

    type: Literal["mongodb"] = "mongodb"
    example_name: ClassVar[str | None] = "catalog"
    default_port: ClassVar[int | None] = 27017
    install_extra: ClassVar[str | None] = "mongodb"

    connection_string: UrlText = Field(examples=["mongodb://app:${env:DB_PASSWORD}@localhost:27017/app"])
    """``mongodb://[user[:${env:PW}]@]host[:port][,host2...][/database][?options]`` or ``mongodb+srv://``."""
    password: SecretText | None = None
    """The password, as a reference, when the connection string does not carry one."""
    database: str | None = None
    """Database to use; defaults to the one in the connection string's path."""
    max_idle_time_ms: int | None = Field(default=None, gt=0)
    """Milliseconds a pooled connection may stay idle before it is closed (PyMongo ``maxIdleTimeMS``)."""
    tls: bool | None = None
    """Use TLS (true when ``ca_file`` is given); left to the connection string when unset."""
    ca_file: str | None = None
    """PEM file of the certificate authorities trusted to sign the server's certificate."""
    options: OptionsMap = Field(default_factory=dict)
    """Further keyword arguments for ``AsyncMongoClient`` (e.g. ``retryWrites``, ``timeoutMS``)."""

    @model_validator(mode="before")
    @classmethod
    def _motor_names(cls, data: Any) -> Any:
        return motor_names(data)

    @field_validator("connection_string")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = parse_url(value, _SCHEMES)
        clash = sorted(k for k in parts.query if k.lower() in _MANAGED)
        if clash:
            raise ValueError(
                f"option(s) {', '.join(clash)} in the URL are set by this resource's fields "
                "(max_pool_size, min_pool_size, max_idle_time_ms, connect_timeout, acquire_timeout, "
                "tls, ca_file); set them there"
            )
        return value

    @model_validator(mode="after")
    def _check_settings(self) -> MongoResource:
        parts = self.url_parts()
        if parts.password and self.password:
            raise ValueError("give the password either in connection_string or in password, not both")
        if self.password and not parts.user:
            raise ValueError("password is set but the connection string names no user (mongodb://user@host/)")
        if self.database is None and not parts.database:
            raise ValueError("no database: set database, or name one in the connection string's path")
        if self.ca_file is not None and self.tls is False:
            raise ValueError("ca_file is set but tls is false")
        reject_managed_options({k.lower(): v for k, v in self.options.items()}, _MANAGED, "mongodb")
        return self

    def url_parts(self) -> UrlParts:
        return parse_url(self.connection_string, _SCHEMES)

    def target(self) -> str:
        parts = self.url_parts()
        if parts.scheme == "mongodb+srv":
            return parts.hostinfo  # DNS SRV records give the hosts and ports
        return super().target()

    @property
    def database_name(self) -> str:
        """The database this resource works in (as written, references unresolved)."""
        return self.database or self.url_parts().database or ""

    def _metadata_details(self) -> dict[str, Any]:
        details = super()._metadata_details()
        details.update(database=self.database_name, driver="pymongo", tls=self._tls_enabled())
        if self.url_parts().scheme == "mongodb+srv":
            details["port"] = None
        return details

    def _tls_enabled(self) -> bool | None:
        return True if self.ca_file is not None and self.tls is None else self.tls

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        pymongo = require("pymongo", "mongodb", type_name=self.type)
        parts = self.url_parts()
        timeout_ms = int(self.connect_timeout * 1000)
        kwargs: dict[str, Any] = {
            "maxPoolSize": self.max_pool_size,
            "minPoolSize": self.min_pool_size,
            "connectTimeoutMS": timeout_ms,
            "serverSelectionTimeoutMS": timeout_ms,
            "waitQueueTimeoutMS": int(self.acquire_timeout * 1000),
            "appname": f"xresource:{self.name}",
        }
        if self.max_idle_time_ms is not None:
            kwargs["maxIdleTimeMS"] = self.max_idle_time_ms
        tls = self._tls_enabled()
        if tls is not None:
            kwargs["tls"] = tls
        if self.ca_file is not None:
            kwargs["tlsCAFile"] = self.ca_file
            self.check_within_roots(self.ca_file, "ca_file")  # pymongo opens it itself
        password = parts.password or self.password
        if password:
            kwargs["password"] = self.resolve(password)
        kwargs.update(self._resolve_options(self.options))
        add_command_tracing(self, kwargs)  # a span per command, only while tracing is on

        client: Any = pymongo.AsyncMongoClient(self.resolve(parts.without_password), **kwargs)
        try:
            async with self._connect_deadline():
                await client.aconnect()
                await client.admin.command("ping")
        except XResourceTimeoutError:
            # PyMongo keeps retrying an unreachable server until the deadline; its
            # monitor's last error tells a refused connection from a silent server.
            refused = self._refusal(client)
            await client.close()
            if refused is None:
                raise
            raise XResourceConnectionError(
                f"{self.label} at {self.target()}: connect failed: {self.scrub(str(refused))}"
            ) from refused
        except BaseException:
            await client.close()
            raise
        self._rt = MongoRuntime(client, client[self.resolve(self.database_name)], self.max_pool_size)
        self._log_connected()

    @staticmethod
    def _refusal(client: AsyncMongoClient[Any]) -> Exception | None:
        """The monitor's error for a server that refused the connection, if any."""
        for server in client.topology_description.server_descriptions().values():
            if server.error is not None and says_refused(str(server.error)):
                return server.error
        return None

    async def _disconnect(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            # PyMongo's close() lets checked-out connections finish and closes them on return.
            await self._close_bounded(rt.pool.close, lambda: None)

    async def _validate_connection(self) -> bool:
        rt = self._rt
        if rt is None:
            return False
        client = rt.pool
        return await self._round_trip(lambda: client.admin.command("ping"))

    async def list_collections_or_tables(self) -> list[str]:
        """Names of the collections in the database."""
        db = self.db
        async with self.translate_errors("list_collections_or_tables"):
            return sorted(await db.list_collection_names())

    # ---- the database ---------------------------------------------------------------------

    @property
    def db(self) -> AsyncDatabase[Any]:
        """The PyMongo ``AsyncDatabase`` (raises ``XResourceStateError`` when not connected)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        return rt.db

    @property
    def client(self) -> AsyncMongoClient[Any]:
        """The underlying ``AsyncMongoClient`` (for other databases or admin commands)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        return rt.pool

    def get_collection(self, name: str) -> AsyncCollection[Any]:
        """The collection ``name`` of the database (it need not exist yet)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        collection = rt.collections.get(name)
        if collection is None:
            collection = rt.db[name]
            if len(rt.collections) < _COLLECTION_CACHE_LIMIT:
                rt.collections[name] = collection
        return collection

    async def get_collections(self, *names: str) -> dict[str, AsyncCollection[Any]]:
        """The named collections, or every existing collection when no name is given."""
        if not names:
            names = tuple(await self.list_collections_or_tables())
        return {name: self.get_collection(name) for name in names}

    # ---- pool -----------------------------------------------------------------------------

    if TYPE_CHECKING:

        def acquire(self, timeout: float | None = None) -> _AsyncGeneratorContextManager[AsyncClientSession]:
            """Lease one of ``max_pool_size`` slots as a PyMongo ``AsyncClientSession``."""

    def get_pool_stats(self) -> PoolStats:
        """Occupancy summed over the servers' pools.

        PyMongo has no public pool counters; these come from its pool objects
        and fall back to zeros if a future PyMongo renames them.
        """
        rt = self._rt
        if rt is None:
            return super().get_pool_stats()
        in_use = idle = waiting = 0
        topology = getattr(rt.pool, "_topology", None)
        for server in list(getattr(topology, "_servers", {}).values()):
            pool = getattr(server, "pool", None)
            active = int(getattr(pool, "active_sockets", 0))
            free = len(getattr(pool, "conns", ()))
            # A checkout counts itself active a moment before it takes its connection
            # off the idle list; do not count that connection twice.
            in_use += min(active, max(0, self.max_pool_size - free))
            idle += free
            waiting += max(0, int(getattr(pool, "operation_count", 0)) - active)
        return PoolStats(
            size=in_use + idle,
            in_use=in_use,
            idle=idle,
            waiters=waiting + rt.lease_waiting,
            max=self.max_pool_size,
        )

    async def _checkout(self, rt: PoolRuntime) -> tuple[AsyncClientSession, Release]:
        assert isinstance(rt, MongoRuntime)  # built by _connect
        leases, client = rt.leases, rt.pool
        rt.lease_waiting += 1
        try:
            await leases.acquire()
        finally:
            rt.lease_waiting -= 1
        try:
            session: AsyncClientSession = client.start_session()
        except BaseException:
            leases.release()
            raise

        async def release() -> None:
            try:
                await session.end_session()
            finally:
                leases.release()

        return session, release

    def _acquire_timed_out(self, limit: float) -> XResourceError:
        return self._exhausted(limit)

    # ---- transactions ---------------------------------------------------------------------

    def transaction(
        self,
        *,
        read_concern: MongoReadConcern | None = None,
        write_concern: MongoWriteConcern | None = None,
        max_commit_time: float | None = None,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[AsyncClientSession]:
        """A multi-document transaction: ``async with db.transaction() as session:``.

        Pass ``session=session`` to each operation that belongs to it. It commits
        when the block ends and aborts when the block raises or is cancelled;
        the session's lease always goes back. MongoDB runs transactions on
        replica sets and sharded clusters only: on a standalone server, entering
        the block raises ``XResourceUnsupportedError``. ``read_concern``
        (``local``, ``majority``, ``snapshot``), ``write_concern`` (``majority``
        or a number of members) and ``max_commit_time`` (seconds) default to the
        client's; ``timeout`` bounds the wait for a lease, as in ``acquire``.
        """
        options = transaction_options(self.label, read_concern, write_concern, max_commit_time)

        async def begin(session: AsyncClientSession) -> AsyncClientSession:
            self._check_transactions(session.client)
            await session.start_transaction(**options)
            return session

        return pooled_transaction(
            self, timeout=timeout, begin=begin, commit=commit, rollback=abort, discard=lambda session: None
        )

    def _check_transactions(self, client: Any) -> None:
        """Raise ``XResourceUnsupportedError`` when the deployment cannot run transactions."""
        reason = transactions_unsupported(client.topology_description)
        if reason is not None:
            raise XResourceUnsupportedError(
                f"{self.label} at {self.target()}: transactions are not supported: {reason}; "
                "MongoDB runs them on replica sets (a single-node one will do) and sharded clusters"
            )

    # ---- errors ---------------------------------------------------------------------------

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        return error_class(exc, self._error_code(exc))

    def _error_code(self, exc: BaseException) -> int | None:
        """The server's error code; for a bulk write, that of its first failed write."""
        code = getattr(exc, "code", None)
        details = getattr(exc, "details", None)
        writes = details.get("writeErrors") if isinstance(details, dict) else None
        if writes and isinstance(writes[0], dict):
            code = writes[0].get("code")  # a bulk write's own code (65) says only "some failed"
        return code if isinstance(code, int) else None
