"""The surge rule for asyncpg pools (see ``_handover``).

asyncpg documents a ``connect`` hook for the pool (0.30+) and termination
listeners on connections: every connection a pool opens passes :func:`open_connection`,
which counts it. What asyncpg does not expose is named where it is used: the
pool's ``min_size`` floor after creation (``Pool._minsize``, kept by the pool's
own background task in 0.32+, ``Pool._schedule_min_size_maintenance``) and its
idle connections (``Pool._holders``). ``tests/backends/test_handover.py`` fails if
a release changes them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from xresource.backends.databases._base import PoolRuntime
from xresource.backends.databases._handover import ConnectionBudget, Gate


def keeps_floor(pool_class: type) -> bool:
    """Whether this asyncpg refills its ``min_size`` in the background (0.32+)."""
    return hasattr(pool_class, "_schedule_min_size_maintenance")


async def open_connection(
    rt: PoolRuntime, counts: bool, connect: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
) -> Any:
    """asyncpg's ``connect`` hook.

    A draining pool pays a token of its successor's budget for each connection it
    opens (code that kept the old version); a new pool in a hand-over adds a gate
    slot for each (``counts``: its floor opens them in the background).
    """
    budget = rt.budget if rt.shed is not None else None
    if budget is not None:
        await budget.take()
    try:
        conn = await connect(*args, **kwargs)
    except BaseException:
        if budget is not None:
            budget.give()
        raise
    conn.add_termination_listener(functools.partial(_closed, rt, counts))
    if counts and rt.gate is not None and rt.shed is None:
        rt.gate.add_slot()
    return conn


def _closed(rt: PoolRuntime, counts: bool, _conn: object) -> None:
    if rt.shed is not None:
        if rt.budget is not None:
            rt.budget.give()
    elif counts and rt.gate is not None:
        rt.gate.slots -= 1  # the floor opens another, which adds its slot


class GatedPool:
    """An asyncpg pool whose operations pass a :class:`Gate` (the rest is the pool's own)."""

    __slots__ = ("gate", "pool")

    def __init__(self, pool: Any, gate: Gate) -> None:
        self.pool = pool
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        gate = self.gate
        await gate.enter()
        try:
            return await getattr(self.pool, method)(*args, **kwargs)
        finally:
            gate.leave()

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", *args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("executemany", *args, **kwargs)

    async def acquire(self, *, timeout: float | None = None) -> Any:
        await self.gate.enter()
        try:
            return await self.pool.acquire(timeout=timeout)
        except BaseException:
            self.gate.leave()
            raise

    async def release(self, conn: Any, *, timeout: float | None = None) -> None:
        try:
            await self.pool.release(conn, timeout=timeout)
        finally:
            self.gate.leave()


def grower(
    pool: Any, gate: Gate, budget: ConnectionBudget, max_size: int, counts: bool
) -> Callable[[], None]:
    """Spend the budget's free tokens on connections, up to ``max_size``.

    With a floor kept in the background (0.32+), each token raises the floor by
    one and the pool opens the connection off every query's path; the connection
    adds its gate slot once open. Older asyncpg opens it on the next query that
    finds every connection busy: the token adds the slot at once.
    """

    def grow() -> None:
        if counts:
            raised = False
            while pool.get_min_size() < max_size and budget.try_take():
                pool._minsize += 1
                raised = True
            if raised:
                pool._schedule_min_size_maintenance()
        else:
            while gate.slots < max_size and budget.try_take():
                gate.add_slot()

    return grow


def set_floor(pool: Any, min_size: int) -> None:
    """The pool's ``min_size`` floor from now on (refilled in the background, 0.32+)."""
    if hasattr(pool, "_minsize"):
        pool._minsize = min_size
    schedule = getattr(pool, "_schedule_min_size_maintenance", None)
    if schedule is not None:
        schedule()


def shed_idle(pool: Any, keep: int) -> None:
    """Terminate the pool's idle connections but ``keep`` (for queries already waiting).

    A terminated holder stays in the pool without a connection, as after asyncpg's
    own idle timeout.
    """
    idle = [h for h in getattr(pool, "_holders", ()) if h.is_connected() and h.is_idle()]
    for holder in idle[keep:]:
        holder.terminate()
