"""``transaction()`` for pooled databases: the options, checked once, and the guarantees.

Every backend's ``transaction()`` runs through :func:`pooled_transaction`,
which holds the promises in one place:

- one lease of one pooled connection (``acquire``), always given back;
- commit when the block ends normally;
- rollback when it raises, or when its task is cancelled. A rollback that
  fails or does not finish within ``close_timeout`` (a connection cut off
  mid-query by the cancellation, say) discards the connection instead, and
  the server rolls back what a dropped connection had not committed;
- exceptions raised inside the block come out untouched (like ``acquire``);
  a failed begin or commit raises an ``XResourceError`` subclass.

The backends supply four small steps (begin, commit, rollback, discard) in
their own driver's words.
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, get_args

from xresource.errors import XResourceError

# asyncio and logging are imported inside the functions that use them: `xresource validate`
# loads this module for the model only and never pays for them (docs/performance.md).

if TYPE_CHECKING:
    import logging

    from xresource.backends.databases._base import DatabaseResource


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("xresource.databases")


IsolationLevel = Literal["read_uncommitted", "read_committed", "repeatable_read", "serializable"]
ISOLATION_LEVELS: tuple[IsolationLevel, ...] = get_args(IsolationLevel)
SQL_ISOLATION = {level: level.replace("_", " ").upper() for level in ISOLATION_LEVELS}
"""``"repeatable_read"`` -> ``"REPEATABLE READ"``: the words of ``SET TRANSACTION ISOLATION LEVEL``."""


def check_isolation(label: str, isolation: object) -> IsolationLevel | None:
    """The isolation level as one of :data:`ISOLATION_LEVELS` (or ``None``: the server's default).

    SQL spellings are accepted too (``"REPEATABLE READ"``, ``"repeatable-read"``);
    anything else is a ``ValueError``. The value is checked against this fixed
    list before it gets anywhere near a statement.
    """
    if isolation is None:
        return None
    if not isinstance(isolation, str):
        raise TypeError(f"{label}: isolation must be a string or None, not {type(isolation).__name__}")
    normal = "_".join(isolation.strip().lower().replace("-", " ").split())
    for level in ISOLATION_LEVELS:
        if normal == level:
            return level
    close = difflib.get_close_matches(normal, ISOLATION_LEVELS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"{label}: unknown isolation level {isolation!r}; use one of {', '.join(ISOLATION_LEVELS)}{hint}"
    )


def check_flag(label: str, name: str, value: object) -> bool:
    """A real ``bool``: ``readonly="false"`` must not quietly mean true."""
    if not isinstance(value, bool):
        raise TypeError(f"{label}: {name} must be True or False, not {value!r}")
    return value


Begin = Callable[[Any], Awaitable[Any]]
"""Starts the transaction on a connection; returns the driver's handle of it (or the connection)."""
Step = Callable[[Any], Awaitable[None]]
"""Commits or rolls back, given what ``Begin`` returned."""


@asynccontextmanager
async def pooled_transaction(
    resource: DatabaseResource,
    *,
    timeout: float | None,
    begin: Begin,
    commit: Step,
    rollback: Step,
    discard: Callable[[Any], None],
    wrap: Callable[[Any], Any] | None = None,
) -> AsyncIterator[Any]:
    """Lease a connection, begin, yield it (or ``wrap(conn)``), then commit or roll back.

    ``discard(conn)`` closes the connection at once (synchronously) so the pool
    drops it instead of reusing it.
    """
    async with resource.acquire(timeout) as conn:
        try:
            handle = await begin(conn)
        except XResourceError:
            discard(conn)
            raise
        except Exception as exc:
            discard(conn)  # half-begun: what the server holds for it is unknown
            raise resource._op_error(exc, "begin transaction") from exc
        except BaseException:
            discard(conn)
            raise
        try:
            yield conn if wrap is None else wrap(conn)
        except GeneratorExit:
            # The block was abandoned without an exit (garbage collection): no await is
            # allowed here, so drop the connection and let the server roll back.
            discard(conn)
            raise
        except BaseException:
            await _roll_back(resource, conn, handle, rollback, discard)
            raise
        try:
            await commit(handle)
        except BaseException as exc:
            await _roll_back(resource, conn, handle, rollback, discard)
            if isinstance(exc, Exception):
                raise resource._op_error(exc, "commit") from exc
            raise


async def _roll_back(
    resource: DatabaseResource, conn: Any, handle: Any, rollback: Step, discard: Callable[[Any], None]
) -> None:
    """Roll back within ``close_timeout``; when that fails, discard the connection instead."""
    import asyncio

    try:
        async with asyncio.timeout(resource.close_timeout):
            await rollback(handle)
    except asyncio.CancelledError:
        discard(conn)  # cancelled again while rolling back: do not wait any longer
        raise
    except Exception as exc:  # noqa: BLE001 - reported, and the connection is closed instead
        discard(conn)
        _logger().warning(
            "%s: rollback failed (%s); the connection was closed instead, so the server rolls back",
            resource.label,
            resource.scrub(str(exc).strip() or type(exc).__name__),
        )
