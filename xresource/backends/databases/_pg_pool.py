"""The surge rule for asyncpg pools (see ``_handover``).

asyncpg documents a ``connect`` hook for the pool (0.30+) and termination
listeners on connections: every connection a pool opens passes :func:`open_connection`,
which counts it. What asyncpg does not expose is named where it is used: the
pool's ``min_size`` floor after creation (``Pool._minsize``, kept by the pool's
own background task in 0.32+, ``Pool._schedule_min_size_maintenance``) and its
idle connections (``Pool._holders``). ``tests/backends/test_handover.py`` fails if
a release changes them.

Adoption: when the new version would open its connections with exactly the
arguments the old one used (a change of pool sizes, say), it proves itself on one
connection of its own, then after the swap takes the old version's idle
connections over instead of opening new ones: a connection leaves its old holder
(``PoolConnectionHolder._con``, ``Connection._pool_holder``, the holder's
inactivity timer) and the new pool's hook returns it. A move costs the budget
nothing, so a pool resize opens only the connection it proves itself on and those
beyond the old pool's size, and neither server nor client pays for the other
set-ups (most of a reload's cost, docs/performance.md).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from xresource.backends.databases._base import PoolRuntime
from xresource.backends.databases._handover import ConnectionBudget, Gate, GatedPoolBase, raw


def keeps_floor(pool_class: type) -> bool:
    """Whether this asyncpg refills its ``min_size`` in the background (0.32+)."""
    return hasattr(pool_class, "_schedule_min_size_maintenance")


class PgRuntime(PoolRuntime):
    """A PostgreSQL version's runtime: who owns which connection, and what its hand-over paid."""

    __slots__ = ("credit", "owners", "paid", "signature")

    def __init__(self) -> None:
        super().__init__(None)
        self.signature: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        """The arguments this version's connections open with (adoption needs them equal)."""
        self.owners: dict[int, _Owner] = {}
        """Open connections by ``id``: their owner cell, which their close listener reads."""
        self.paid = 0
        """Connections the budget paid for that this pool has not opened yet."""
        self.credit = 0
        """Floor raises made for the old version's idle connections, to be adopted."""


class _Owner:
    """Which version a connection counts for; changes when a successor adopts it."""

    __slots__ = ("counts", "rt")

    def __init__(self, rt: PgRuntime, counts: bool) -> None:
        self.rt = rt
        self.counts = counts


async def open_connection(
    rt: PgRuntime, counts: bool, connect: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
) -> Any:
    """asyncpg's ``connect`` hook.

    A draining pool pays a token of its successor's budget for each connection it
    opens (code that kept the old version); a new pool in a hand-over adopts an
    idle connection of the old version where it can, else opens one it paid for,
    and adds a gate slot for each (``counts``: its floor opens them in the background).
    """
    signature = (args, kwargs)
    rt.signature = signature
    budget = rt.budget
    if budget is not None and rt.shed is None and counts and not budget.lifted:
        adopted = await _adopt_or_pay(rt, budget)
        if adopted is not None:
            if rt.gate is not None:
                rt.gate.add_slot()
            return adopted
    draining = budget if rt.shed is not None else None
    if draining is not None:
        borrowed = await _borrow_or_pay(rt, draining)
        if borrowed is not None:
            return borrowed
    try:
        conn = await connect(*args, **kwargs)
    except BaseException:
        if draining is not None:
            draining.give()
        raise
    owner = _Owner(rt, counts)
    rt.owners[id(conn)] = owner
    conn.add_termination_listener(functools.partial(_closed, owner))
    if counts and rt.gate is not None and rt.shed is None:
        rt.gate.add_slot()
    return conn


def _closed(owner: _Owner, conn: object) -> None:
    rt = owner.rt
    rt.owners.pop(id(conn), None)
    if rt.shed is not None:
        if rt.budget is not None:
            rt.budget.give()
    elif owner.counts and rt.gate is not None:
        rt.gate.slots -= 1  # the floor opens another, which adds its slot


async def _adopt_or_pay(rt: PgRuntime, budget: ConnectionBudget) -> Any:
    """An idle connection of the old version, or None once this open is paid for."""
    while True:
        donor = _donor(rt, budget)
        # Only from a draining version: before the swap the new version proves itself
        # on a connection of its own, and the old one still serves.
        conn = _detach_idle(donor) if donor is not None and donor.shed is not None else None
        if donor is not None and conn is not None:
            _move(conn, donor, rt)
            if rt.credit:
                rt.credit -= 1
            elif rt.paid:
                rt.paid -= 1
                budget.give()  # a move, not an open: the token goes back
            return conn
        if rt.paid:
            rt.paid -= 1
            return None
        if not rt.credit:
            return None  # a floor refill outside the hand-over's growth, as without adoption
        if budget.lifted or budget.try_take():
            rt.credit -= 1
            return None
        await budget.changed()


async def _borrow_or_pay(rt: PgRuntime, budget: ConnectionBudget) -> Any:
    """A draining version needs a connection (code kept it): a token, or one of its successor's idle ones.

    A pool that grew took every token there was: borrowing keeps the two versions'
    total where it is, and the connection moves over again once given back.
    """
    while not budget.try_take():
        taker = budget.taker
        if isinstance(taker, PgRuntime) and taker.signature == rt.signature:
            conn = _detach_idle(taker)
            if conn is not None:
                _move(conn, taker, rt)
                if taker.gate is not None and taker.shed is None:
                    taker.gate.slots -= 1
                    # One below its floor, so the connection comes back through the grower.
                    pool = raw(taker.pool)
                    pool._minsize = max(0, pool.get_min_size() - 1)
                return conn
        await budget.changed()
    return None


def _move(conn: Any, source: PgRuntime, target: PgRuntime) -> None:
    """``conn`` counts for ``target`` from now on (its close listener reads the owner cell)."""
    owner = source.owners.pop(id(conn), None) or _Owner(target, True)
    owner.rt = target
    target.owners[id(conn)] = owner


def _donor(rt: PgRuntime, budget: ConnectionBudget) -> PgRuntime | None:
    """The old version's runtime, if its connections are interchangeable with ours."""
    previous = budget.previous
    donor = getattr(previous, "_rt", None)
    if isinstance(donor, PgRuntime) and donor is not rt and donor.signature == rt.signature:
        return donor
    return None


def _detach_idle(donor: PgRuntime) -> Any:
    """Take one idle connection out of ``donor``'s pool (its holder is left empty).

    Never one that an operation of the donor waits for: a released connection
    stays idle in the pool's queue until the waiting operation runs, and an empty
    holder would make that operation open a connection, which a draining version
    may only do with a token.
    """
    if not _spare_idle(donor):
        return None
    for holder in reversed(getattr(raw(donor.pool), "_holders", ())):
        conn = holder._con
        if conn is not None and not conn.is_closed() and holder.is_idle():
            holder._maybe_cancel_inactive_callback()
            holder._con = None
            conn._pool_holder = None
            return conn
    return None


def adoptable(rt: PgRuntime, budget: ConnectionBudget) -> int:
    """How many idle connections the draining old version could hand to ``rt``."""
    donor = _donor(rt, budget)
    if donor is None or donor.shed is None:
        return 0
    return _spare_idle(donor)


def _spare_idle(rt: PgRuntime) -> int:
    """Idle connections of ``rt``'s pool that none of its waiting operations will take."""
    pool = raw(rt.pool)
    if pool is None or pool.is_closing():
        return 0
    idle = int(pool.get_idle_size())
    waiting = rt.inflight - (int(pool.get_size()) - idle)
    return max(0, idle - max(0, waiting))


class GatedPool(GatedPoolBase):
    """An asyncpg pool whose operations pass a :class:`Gate` (the rest is the pool's own)."""

    __slots__ = ()

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
    rt: PgRuntime, pool: Any, gate: Gate, budget: ConnectionBudget, max_size: int, counts: bool
) -> Callable[[], None]:
    """Spend the budget's free tokens, and the old version's idle connections, up to ``max_size``.

    With a floor kept in the background (0.32+), each token or idle connection to
    adopt raises the floor by one and the pool opens (or adopts) the connection off
    every query's path; the connection adds its gate slot once there. Older asyncpg
    opens it on the next query that finds every connection busy: the token adds the
    slot at once.
    """

    def grow() -> None:
        if counts:
            raised = False
            while pool.get_min_size() < max_size:
                if budget.try_take():
                    rt.paid += 1
                elif rt.credit < adoptable(rt, budget):
                    rt.credit += 1
                else:
                    break
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
    """Terminate the pool's idle connections but ``keep`` (for queries already waiting, or to hand over).

    A terminated holder stays in the pool without a connection, as after asyncpg's
    own idle timeout.
    """
    idle = [h for h in getattr(pool, "_holders", ()) if h.is_connected() and h.is_idle()]
    for holder in idle[keep:]:
        holder.terminate()


def offer_idle(rt: PgRuntime) -> int:
    """A draining version offers its idle connections to its successor: how many it will adopt.

    The successor raises its floor for each (up to its size) and adopts them in the
    background; the old version keeps that many idle instead of closing them.
    """
    budget = rt.budget
    taker = budget.taker if budget is not None else None
    if budget is None or not isinstance(taker, PgRuntime) or taker.signature != rt.signature:
        return 0
    budget.offer()
    return taker.credit
