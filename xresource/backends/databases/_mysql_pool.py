"""The surge rule for aiomysql pools (see ``_handover``).

aiomysql has no hook on opening a connection, so a new pool in a hand-over is
wrapped in :class:`GatedPool` (its checkouts pass a gate, one per connection paid
for) and :func:`grow` opens the connections the budget allows in the background.
aiomysql's ``minsize`` is read-only after creation; the floor is its ``Pool._minsize``
(refilled on each ``acquire``), named here where it is set. ``pool.clear()``
(public) closes a draining pool's idle connections.

Adoption: when both pools open connections with the same arguments
(``Pool._conn_kwargs``: a change of pool sizes, say), :func:`grow` moves the
draining pool's idle connections (``Pool._free``) into the new pool instead of
opening new ones; a move costs the budget nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from xresource.backends.databases._base import PoolRuntime
from xresource.backends.databases._handover import ConnectionBudget, Gate, GatedPoolBase, raw

log = logging.getLogger("xresource.databases")

_RETRY_SECONDS = 1.0


class GatedPool(GatedPoolBase):
    """An aiomysql pool whose checkouts pass a :class:`Gate` (the rest is the pool's own)."""

    __slots__ = ()

    async def acquire(self) -> Any:
        await self.gate.enter()
        try:
            return await self.pool.acquire()
        except BaseException:
            self.gate.leave()
            raise

    def release(self, conn: Any) -> Any:
        try:
            return self.pool.release(conn)
        finally:
            self.gate.leave()


async def grow(
    pool: Any, gate: Gate, budget: ConnectionBudget, max_size: int, stopped: Callable[[], bool]
) -> None:
    """Adopt or open a connection for each free slot, up to ``max_size``, each adding a gate slot.

    An idle connection of the draining old version is moved over when the two open
    connections alike; otherwise a token of ``budget`` pays for a new one: raising
    the floor by one and taking a connection makes aiomysql open it here, off every
    query's path; it goes back to the pool at once.
    """
    while gate.slots < max_size:
        if _adopt(pool, budget):
            gate.add_slot()
            continue
        if not budget.try_take():
            if budget.lifted or stopped():
                return
            await budget.changed()  # a token, or idle connections offered (ConnectionBudget.offer)
            continue
        if budget.lifted or stopped():
            return
        try:
            set_floor(pool, max(pool.minsize, gate.slots + 1))
            conn = await pool.acquire()
            await pool.release(conn)
        except Exception as exc:  # noqa: BLE001 - the server refused: try again, the budget keeps the token
            budget.give()
            log.warning("could not open a connection for a replaced pool: %s", type(exc).__name__)
            await asyncio.sleep(_RETRY_SECONDS)
            continue
        gate.add_slot()


def _alike(old: Any, new: Any) -> bool:
    """Whether the two pools open their connections with the same arguments."""
    return bool(old._conn_kwargs == new._conn_kwargs and old.echo == new.echo)


def _adopt(pool: Any, budget: ConnectionBudget) -> bool:
    """Move one idle connection of the draining previous version into ``pool``."""
    donor = getattr(budget.previous, "_rt", None)
    if not isinstance(donor, MySqlRuntime) or donor.shed is None or budget.lifted:
        return False
    old = raw(donor.pool)
    if old is pool or old.closed or not _alike(old, pool):
        return False
    # Not one an operation of the old version waits for (it would open another), and
    # not beyond the new pool's maxsize (its _free drops its oldest beyond it).
    waiting = donor.inflight - (old.size - old.freesize)
    while old.freesize > max(0, waiting) and pool.size < pool.maxsize:
        conn = old._free.popleft()
        if not conn.closed:
            pool._free.append(conn)
            return True
    return False


def offer_idle(rt: MySqlRuntime) -> int:
    """A draining version offers its idle connections to its successor: how many it has room for."""
    budget = rt.budget
    taker = budget.taker if budget is not None else None
    if budget is None or not isinstance(taker, MySqlRuntime) or taker.gate is None:
        return 0
    new = raw(taker.pool)
    room = int(new.maxsize) - taker.gate.slots
    if room <= 0 or not _alike(raw(rt.pool), new):
        return 0
    budget.offer()
    return room


def set_floor(pool: Any, min_size: int) -> None:
    """The pool keeps ``min_size`` connections from its next ``acquire`` on (``Pool._minsize``)."""
    if hasattr(pool, "_minsize"):
        pool._minsize = min_size


async def shed_idle(pool: Any, waiting: int, keep: int = 0) -> int:
    """Close the idle connections but ``keep`` (to hand over), unless operations wait; how many closed."""
    if waiting or pool.freesize <= keep:
        return 0
    before: int = pool.size
    if keep:
        while pool.freesize > keep:
            await pool._free.popleft().ensure_closed()
    else:
        await pool.clear()
    return max(0, before - int(pool.size))


class MySqlRuntime(PoolRuntime):
    """The aiomysql pool, and the driver's plain tuple cursor class (for single values)."""

    __slots__ = ("grower", "tuple_cursor")

    def __init__(self, pool: Any, tuple_cursor: Any) -> None:
        super().__init__(pool)
        self.tuple_cursor: Any = tuple_cursor
        self.grower: asyncio.Task[None] | None = None
        """Opens the connections a hand-over budget allows (see :func:`grow`)."""


def start_growing(rt: MySqlRuntime, budget: ConnectionBudget, opened: int, max_size: int, name: str) -> None:
    """Serve through a gate and open connections as ``budget`` allows (``opened`` are open)."""
    pool = rt.pool
    gate = rt.gate = Gate(budget, opened)
    rt.budget = budget
    budget.taker = rt
    rt.pool = GatedPool(pool, gate)
    rt.grower = asyncio.get_running_loop().create_task(
        grow(pool, gate, budget, max_size, lambda: rt.shed is not None), name=f"xresource-grow-{name}"
    )


def stop_growing(rt: MySqlRuntime, min_size: int) -> None:
    """The budget is lifted: the plain pool again, with its own floor, filled now."""
    pool = rt.pool = raw(rt.pool)
    set_floor(pool, min_size)
    if rt.grower is not None:
        rt.grower.cancel()
    rt.grower = asyncio.get_running_loop().create_task(_fill(pool), name="xresource-fill")


async def _fill(pool: Any) -> None:
    """aiomysql opens up to its floor on an ``acquire``: take one and give it back."""
    try:
        conn = await pool.acquire()
        await pool.release(conn)
    except Exception as exc:  # noqa: BLE001 - the next query fills it
        log.debug("could not fill the pool to its floor now: %s", type(exc).__name__)
