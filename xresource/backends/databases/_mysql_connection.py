"""``MySQLResource.transaction()``: the connection it yields, and its steps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from xresource._optional import require
from xresource.backends.databases._transactions import (
    SQL_ISOLATION,
    IsolationLevel,
    check_flag,
    check_isolation,
    pooled_transaction,
)


class MySqlConnection:
    """One aiomysql connection with the query methods of ``MySQLResource``.

    ``fetch``/``fetchrow`` return ``dict`` rows, ``fetchval`` one value,
    ``execute``/``executemany`` the number of affected rows; placeholders are
    ``%s``. Errors are PyMySQL's own, as with ``acquire()``. ``raw`` is the
    aiomysql connection, for cursors of your own.
    """

    __slots__ = ("_tuple_cursor", "raw")

    def __init__(self, raw: Any, tuple_cursor: Any) -> None:
        self.raw: Any = raw
        self._tuple_cursor = tuple_cursor

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Run ``query`` and return all rows as dicts."""
        cur = await self.raw.cursor()
        await cur.execute(query, args or None)
        rows: list[dict[str, Any]] = await cur.fetchall()
        await cur.close()
        return rows

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        """Run ``query`` and return its first row as a dict, or ``None``."""
        cur = await self.raw.cursor()
        await cur.execute(query, args or None)
        row: dict[str, Any] | None = await cur.fetchone()
        await cur.close()
        return row

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """Run ``query`` and return one value of its first row (``None`` when there is no row)."""
        cur = await self.raw.cursor(self._tuple_cursor)
        await cur.execute(query, args or None)
        row = await cur.fetchone()
        await cur.close()
        return None if row is None else row[column]

    async def execute(self, query: str, *args: Any) -> int:
        """Run a statement; returns the number of affected rows."""
        cur = await self.raw.cursor(self._tuple_cursor)
        count: int = await cur.execute(query, args or None)
        await cur.close()
        return count

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> int:
        """Run a statement once per argument tuple."""
        cur = await self.raw.cursor(self._tuple_cursor)
        count: int = await cur.executemany(query, list(args))
        await cur.close()
        return count

    def __repr__(self) -> str:
        return f"MySqlConnection(thread_id={self.raw.thread_id()})"


async def commit(conn: Any) -> None:
    await conn.commit()


async def rollback(conn: Any) -> None:
    await conn.rollback()


def close_now(conn: Any) -> None:
    """Close a connection at once; the pool drops it and the server rolls back its transaction."""
    conn.close()


def stop_on_server(pool: Any, conn: Any, timeout: float) -> None:
    """Close ``conn`` now, and have the server end its session from another connection.

    A statement cut off by a cancellation goes on running on the server, holding
    its locks, until it ends or the server notices the closed socket; ``KILL``
    ends it, and rolls its transaction back, at once. Runs in the background:
    the cancelled task must not wait for it.
    """
    thread_id = conn.server_thread_id[0] if conn.server_thread_id else None
    conn.close()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # finalised outside the loop: closing is all there is
        return
    if thread_id is None:
        return
    task = loop.create_task(_kill(pool, int(thread_id), timeout))
    _KILLS.add(task)
    task.add_done_callback(_KILLS.discard)


_KILLS: set[asyncio.Task[None]] = set()  # running KILLs: the loop holds tasks only weakly


async def _kill(pool: Any, thread_id: int, timeout: float) -> None:
    with contextlib.suppress(Exception):  # already gone, or the pool closed: nothing left to stop
        async with asyncio.timeout(timeout):
            conn = await pool.acquire()
            try:
                cur = await conn.cursor()
                await cur.execute("KILL %s", (thread_id,))
                await cur.close()
            finally:
                await pool.release(conn)


def mysql_transaction(
    resource: Any, *, isolation: IsolationLevel | str | None, readonly: bool, timeout: float | None
) -> AbstractAsyncContextManager[MySqlConnection]:
    """``MySQLResource.transaction()``: ``SET TRANSACTION`` (when asked), ``BEGIN``, then the block."""
    level = check_isolation(resource.label, isolation)
    characteristics = [f"ISOLATION LEVEL {SQL_ISOLATION[level]}"] if level else []
    if check_flag(resource.label, "readonly", readonly):
        characteristics.append("READ ONLY")
    set_transaction = f"SET TRANSACTION {', '.join(characteristics)}" if characteristics else None
    tuple_cursor: Any = None
    pool = resource._rt.pool if resource._rt is not None else None

    def discard(conn: Any) -> None:
        if pool is None:
            close_now(conn)
        else:
            stop_on_server(pool, conn, resource.close_timeout)

    async def begin(conn: Any) -> Any:
        nonlocal tuple_cursor
        tuple_cursor = require("aiomysql", "mysql", type_name=resource.type).Cursor
        if set_transaction is not None:  # built from the checked values above only
            cur = await conn.cursor(tuple_cursor)
            await cur.execute(set_transaction)
            await cur.close()
        await conn.begin()
        return conn

    return pooled_transaction(
        resource,
        timeout=timeout,
        begin=begin,
        commit=commit,
        rollback=rollback,
        discard=discard,
        wrap=lambda conn: MySqlConnection(conn, tuple_cursor),
    )
