"""``mongodb``: MongoDB through PyMongo's native asyncio client.

Motor, which earlier sketches of xresource used, is deprecated upstream in
favour of ``pymongo.AsyncMongoClient`` (PyMongo 4.13+); this backend uses the
successor and accepts Motor-era option names for the fields that differ.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
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
from xresource.backends.databases._url import reject_managed_options
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourcePoolExhaustedError,
    XResourceRequestError,
    XResourceStateError,
    XResourceTimeoutError,
)
from xresource.secrets import OptionsMap, SecretText, UrlText

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

_SCHEMES = ("mongodb", "mongodb+srv")
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed
_COLLECTION_CACHE_LIMIT = 1024

# Motor-era (PyMongo URI option) names accepted for our fields: alias -> (field, scale).
# A scale converts milliseconds to our seconds.
MOTOR_ALIASES: dict[str, tuple[str, float | None]] = {
    "maxPoolSize": ("max_pool_size", None),
    "minPoolSize": ("min_pool_size", None),
    "maxIdleTimeMS": ("max_idle_time_ms", None),
    "tlsCAFile": ("ca_file", None),
    "connectTimeoutMS": ("connect_timeout", 0.001),
    "waitQueueTimeoutMS": ("acquire_timeout", 0.001),
}
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

    def __init__(self, client: Any, db: AsyncDatabase[Any], max_leases: int) -> None:
        super().__init__(client)
        self.db = db
        self.collections: dict[str, AsyncCollection[Any]] = {}
        self.leases = asyncio.Semaphore(max_leases)
        self.lease_waiting = 0


def _motor_alias_schema(schema: dict[str, Any], cls: type) -> None:
    """List the Motor-era names in the JSON Schema too, so editors accept what we accept."""
    properties = schema.setdefault("properties", {})
    for alias, (field_name, scale) in MOTOR_ALIASES.items():
        if scale is None:
            entry = {k: v for k, v in properties.get(field_name, {}).items() if k not in ("title", "default")}
            entry["description"] = f"Motor-era name of `{field_name}`."
        else:
            entry = {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": f"Motor-era name of `{field_name}`, in milliseconds.",
            }
        entry["deprecated"] = True
        properties[alias] = entry


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

    model_config = ConfigDict(json_schema_extra=_motor_alias_schema)

    if TYPE_CHECKING:
        _rt: MongoRuntime | None

    type: Literal["mongodb"] = "mongodb"
    default_port: ClassVar[int | None] = 27017
    install_extra: ClassVar[str | None] = "mongodb"

    connection_string: UrlText
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
        if not isinstance(data, dict) or not any(alias in data for alias in MOTOR_ALIASES):
            return data
        data = dict(data)
        for alias, (field_name, scale) in MOTOR_ALIASES.items():
            if alias not in data:
                continue
            if field_name in data:
                raise ValueError(f"{alias} and {field_name} name the same setting; keep {field_name}")
            value = data.pop(alias)
            if scale is not None and isinstance(value, int | float) and not isinstance(value, bool):
                value = value * scale
            data[field_name] = value
        return data

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
    def _refusal(client: Any) -> Exception | None:
        """The monitor's error for a server that refused the connection, if any."""
        for server in client.topology_description.server_descriptions().values():
            if server.error is not None and _says_refused(str(server.error)):
                return server.error  # type: ignore[no-any-return]
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
    def client(self) -> Any:
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

    # ---- errors ---------------------------------------------------------------------------

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        if isinstance(exc, XResourceStateError):
            return type(exc)
        if not type(exc).__module__.startswith(("pymongo", "bson")):
            if isinstance(exc, TimeoutError):
                return XResourceTimeoutError
            return XResourceConnectionError if isinstance(exc, OSError) else XResourceRequestError
        from pymongo import errors

        if isinstance(exc, errors.WaitQueueTimeoutError):
            return XResourcePoolExhaustedError
        if isinstance(exc, errors.ServerSelectionTimeoutError):
            # Raised for every unreachable server; the details tell refusal from silence.
            return XResourceConnectionError if _says_refused(str(exc)) else XResourceTimeoutError
        if isinstance(exc, errors.OperationFailure) and exc.code in _AUTH_CODES:
            return XResourceAuthenticationError
        if isinstance(exc, errors.PyMongoError) and exc.timeout:
            return XResourceTimeoutError
        if isinstance(exc, errors.ConnectionFailure | errors.ConfigurationError | errors.InvalidOperation):
            return XResourceConnectionError
        return XResourceRequestError


def _says_refused(text: str) -> bool:
    """PyMongo words a refused connection as asyncio does: ``[Errno 111] Connect call failed``."""
    return "refused" in text.lower() or f"[Errno {errno.ECONNREFUSED}]" in text
