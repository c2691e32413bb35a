"""``DatabaseResource``: pooled database backends (postgresql, mysql, mongodb).

What the three backends share lives here: the pool fields, the runtime state
that the query hot path reads, ``acquire()`` with its pool-exhaustion error,
and the bounded connect and close. Connection URLs are parsed in ``_url``.

Hot path note: pydantic keeps private attributes in a dict behind
``__getattr__``, which costs microseconds per read. The pool and the in-flight
counter therefore live in a plain ``__slots__`` object, a :class:`PoolRuntime`
that ``_connect`` builds into ``XResource``'s real slot ``self._rt`` (None
while not connected), so ``fetch`` and friends read them in nanoseconds: one
slot read and one ``is None`` test, no call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict

from pydantic import Field, PrivateAttr, model_validator

from xresource._transport.urls import UrlParts
from xresource.backends.databases._handover import ConnectionBudget, Gate, budget_for
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourcePoolExhaustedError,
    XResourceQueryError,
    XResourceTimeoutError,
)
from xresource.resource import State, XResource

if TYPE_CHECKING:
    import logging

# asyncio and logging are imported inside the functions that use them: `xresource validate`
# loads this module for the model only and never pays for them (docs/performance.md).


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("xresource.databases")


Release = Callable[[], Awaitable[None]]
"""Gives a leased connection back to the pool it came from."""

ErrorTable = Mapping[type[BaseException], type[XResourceError]]
"""A backend's driver exception classes mapped to ours (see :func:`classify`)."""


def classify(table: ErrorTable, exc: BaseException) -> type[XResourceError]:
    """The error class for ``exc``: the table entry of its nearest class, else by builtin kind.

    The table is looked up along ``exc``'s class hierarchy, most specific first, so a
    backend lists the driver's base classes and only the subclasses that differ.
    Outside the table a ``TimeoutError`` is a timeout, an ``OSError`` a connection
    error, and anything else (a ``TypeError`` for a bad argument, say) a query error.
    """
    for klass in type(exc).__mro__:
        found = table.get(klass)
        if found is not None:
            return found
    if isinstance(exc, TimeoutError):
        return XResourceTimeoutError
    if isinstance(exc, OSError):
        return XResourceConnectionError
    return XResourceQueryError


def table_entry(table: ErrorTable, exc_class: type[BaseException]) -> type[XResourceError] | None:
    """The table entry for ``exc_class`` or its nearest listed base (for the coverage tests)."""
    return next((table[k] for k in exc_class.__mro__ if k in table), None)


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PoolStats(TypedDict):
    """Pool occupancy, as reported by ``get_pool_stats`` and ``/metrics``."""

    size: int
    in_use: int
    idle: int
    waiters: int
    max: int


class PoolRuntime:
    """The live state of a connected pooled resource: the driver's pool and a counter.

    A plain slotted object: attribute reads here are as cheap as Python gets,
    which matters on the per-query path. Backends with more state subclass it.
    """

    __slots__ = ("budget", "gate", "inflight", "pool", "shed")

    def __init__(self, pool: Any) -> None:
        self.pool: Any = pool
        """The driver's pool (asyncpg/aiomysql) or client (PyMongo)."""
        self.inflight = 0
        """Operations of this resource holding or waiting for a connection."""
        self.budget: ConnectionBudget | None = None
        """While a replacement takes over: the connections it may open (see ``_handover``)."""
        self.gate: Gate | None = None
        """While this new version's pool grows within its budget: the operations' gate."""
        self.shed: Callable[[], Awaitable[None]] | None = None
        """Set once this version drains: closes idle connections; operations call it when done."""


class DatabaseResource(XResource):
    """A database reached through a connection pool."""

    if TYPE_CHECKING:
        _rt: PoolRuntime | None  # XResource's runtime slot: see the module docstring

    family: ClassVar[str] = "database"
    default_port: ClassVar[int | None] = None

    min_pool_size: int = Field(default=1, ge=0, le=10_000)
    """Connections opened at connect and kept open."""
    max_pool_size: int = Field(default=10, ge=1, le=10_000)
    """Upper bound of pooled connections."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds allowed for ``connect()`` (pool creation and the first round trip) and health checks."""
    acquire_timeout: float = Field(default=10.0, gt=0)
    """Seconds ``acquire()`` waits for a free connection before ``XResourcePoolExhaustedError``."""
    close_timeout: float = Field(default=10.0, gt=0)
    """Seconds ``disconnect()`` lets in-flight work finish before closing connections forcibly."""

    _incoming: ConnectionBudget | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseResource:
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(
                f"min_pool_size ({self.min_pool_size}) is larger than max_pool_size ({self.max_pool_size})"
            )
        return self

    # ---- where the resource points --------------------------------------------------------

    def url_parts(self) -> UrlParts | None:
        """The parsed connection URL, references left as written (backends override)."""
        return None

    def target(self) -> str:
        parts = self.url_parts()
        if parts is None:
            return ""
        return parts.address(self.default_port)

    def _metadata_details(self) -> dict[str, Any]:
        parts = self.url_parts()
        details: dict[str, Any] = {}
        if parts is not None:
            details.update(
                host=parts.host,
                port=parts.port or (self.default_port if parts.host else None),
                database=parts.database,
                user=parts.user,
            )
        details["pool"] = dict(self.get_pool_stats())
        return details

    # ---- pool -----------------------------------------------------------------------------

    def get_pool_stats(self) -> PoolStats:
        """Size, in use, idle, waiters and max of the pool (zeros when not connected)."""
        return PoolStats(size=0, in_use=0, idle=0, waiters=0, max=self.max_pool_size)

    def _waiters(self, in_use: int) -> int:
        # Drivers rarely expose their wait queue; every operation of this resource
        # counts itself in ``inflight`` while it holds or waits for a connection.
        rt = self._rt
        return 0 if rt is None else max(0, rt.inflight - in_use)

    @asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """Borrow a pooled connection for a unit of work.

        Waits at most ``timeout`` seconds (default ``acquire_timeout``) for a
        connection to free up, then raises ``XResourcePoolExhaustedError``
        naming the resource, its address and the pool size. Exceptions raised
        inside the block are the driver's own and pass through untouched.
        """
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        limit = self.acquire_timeout if timeout is None else timeout
        rt.inflight += 1
        try:
            try:
                import asyncio

                async with asyncio.timeout(limit):
                    conn, release = await self._checkout(rt)
            except TimeoutError as exc:
                raise self._acquire_timed_out(limit) from exc
            except XResourceError:
                raise
            except Exception as exc:
                raise self._op_error(exc, "acquire") from exc
            try:
                yield conn
            finally:
                await release()
        finally:
            rt.inflight -= 1
            if rt.shed is not None:
                await rt.shed()

    async def _checkout(self, rt: PoolRuntime) -> tuple[Any, Release]:
        """Take a connection out of the driver's pool, and how to give it back.

        The release is bound to the pool the connection came from: ``disconnect``
        detaches the pool from the resource at once, and then waits for leases
        to come back to it.
        """
        raise NotImplementedError

    def _acquire_timed_out(self, limit: float) -> XResourceError:
        stats = self.get_pool_stats()
        if stats["in_use"] < stats["max"]:
            # Free capacity but no connection in time: opening one was slow.
            return XResourceTimeoutError(
                f"{self.label} at {self.target()}: acquire timed out after {limit:g}s "
                f"while opening a new connection (pool size {stats['max']})"
            )
        return self._exhausted(limit, stats)

    def _exhausted(self, limit: float, stats: PoolStats | None = None) -> XResourcePoolExhaustedError:
        stats = stats or self.get_pool_stats()
        return XResourcePoolExhaustedError(
            f"{self.label} at {self.target()}: no pooled connection freed up within {limit:g}s "
            f"(pool size {stats['max']}: {stats['in_use']} in use, {stats['waiters']} waiting); "
            "raise max_pool_size or hold connections for less time"
        )

    # ---- hand-over (the surge rule, see _handover) -----------------------------------------

    def prepare_takeover(self, previous: Any, *, surge: int) -> None:
        # A budget only between two pools to the same server: a version that moves to
        # another server takes nothing from the old one's.
        if (
            type(previous) is type(self)
            and previous.state is State.READY
            and previous.target() == self.target()
            and isinstance(previous._rt, PoolRuntime)
        ):
            self._incoming = ConnectionBudget(surge, previous)

    def _claim_budget(self) -> ConnectionBudget | None:
        """The budget this connect opens under (one connect only), or None."""
        budget, self._incoming = self._incoming, None
        return budget

    def _when_lifted(self, rt: PoolRuntime, budget: ConnectionBudget, restore: Callable[[], None]) -> None:
        """Once the old version has closed: no more limit, and ``restore`` the pool's own size."""

        def lifted(_: ConnectionBudget) -> None:
            if rt.budget is not budget:
                return  # this version drains into a later one's budget by now
            rt.budget = rt.gate = None
            if rt.shed is None and self._rt is rt:
                restore()

        budget.on_lift(lifted)

    async def begin_drain(self, successor: Any) -> None:
        rt = self._rt
        if rt is None or rt.shed is not None:
            return
        rt.budget = budget_for(successor, self) if successor is not None else None

        async def shed() -> None:
            await self._shed_idle(rt)

        rt.shed = shed
        self._stop_refilling(rt)
        await shed()

    async def _shed_idle(self, rt: PoolRuntime) -> None:
        """Close the idle connections of a draining pool, but those that waiting operations will take."""

    def _stop_refilling(self, rt: PoolRuntime) -> None:
        """A draining pool must not open connections to keep its ``min_pool_size``."""

    @staticmethod
    def _lift(rt: PoolRuntime | None) -> None:
        """This version has closed: its successor no longer needs to wait for its connections."""
        if rt is not None and rt.shed is not None and rt.budget is not None:
            rt.budget.lift()

    # ---- errors ---------------------------------------------------------------------------

    def _op_error(self, exc: BaseException, operation: str) -> XResourceError:
        """The error to raise when ``operation`` failed with the driver exception ``exc``."""
        if self._rt is None or self.state is not State.READY:
            return self._not_connected()
        return self.translate(exc, operation)

    def translate(self, exc: BaseException, operation: str) -> XResourceError:
        error = super().translate(exc, operation)
        if isinstance(error, XResourcePoolExhaustedError):
            return type(error)(f"{error} (pool size {self.max_pool_size})")
        if isinstance(error, XResourceQueryError):
            error.code = self._error_code(exc)
        return error

    def _error_code(self, exc: BaseException) -> str | int | None:
        """The server's own code for ``exc`` (SQLSTATE, error number), if it has one."""
        return None

    # ---- bounded connect and close --------------------------------------------------------

    @asynccontextmanager
    async def _connect_deadline(self) -> AsyncIterator[None]:
        """Bound the whole connect (pool creation and round trip) by ``connect_timeout``."""
        try:
            import asyncio

            async with asyncio.timeout(self.connect_timeout):
                yield
        except TimeoutError as exc:
            raise XResourceTimeoutError(
                f"{self.label} at {self.target()}: connect did not complete within "
                f"{self.connect_timeout:g}s (connect_timeout); is the server up and answering?"
            ) from exc

    async def _round_trip(self, probe: Callable[[], Awaitable[object]]) -> bool:
        """Run ``probe`` bounded by ``connect_timeout``; ``True`` when it answered."""
        try:
            import asyncio

            async with asyncio.timeout(self.connect_timeout):
                await probe()
        except TimeoutError as exc:
            raise XResourceTimeoutError(
                f"{self.label} at {self.target()}: no answer to a health check within "
                f"{self.connect_timeout:g}s (connect_timeout)"
            ) from exc
        return True

    async def _close_bounded(
        self, graceful: Callable[[], Awaitable[None]], force: Callable[[], Awaitable[None] | None]
    ) -> None:
        """Close gracefully (after in-flight work) within ``close_timeout``, then forcibly."""
        try:
            import asyncio

            async with asyncio.timeout(self.close_timeout):
                await graceful()
        except TimeoutError:
            _logger().warning(
                "%s: in-flight work did not finish within close_timeout (%gs); closing connections",
                self.label,
                self.close_timeout,
            )
            result = force()
            if result is not None:
                await result

    def _log_connected(self) -> None:
        _logger().info(
            "%s connected to %s (pool %d..%d)",
            self.label,
            self.target(),
            self.min_pool_size,
            self.max_pool_size,
        )

    # ---- settings shared by backends ------------------------------------------------------

    def _resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Resolve references in string option values (they may be credentials)."""
        return {k: self.resolve(v) if isinstance(v, str) else v for k, v in options.items()}
