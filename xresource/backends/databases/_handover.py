"""Replacing a pooled database resource without doubling its connections.

Make before break opens the new version before the old one closes. Done naively,
the new pool opens all its connections while the old pool still holds all of its
own: every replica of a fleet doubles its connections at the same moment. Here the
two versions share a :class:`ConnectionBudget` instead (docs/hot-reload.md, "the
surge rule"):

- the new version opens with at most ``surge`` connections (``[registry]
  reload_surge``), enough to prove it works before the swap;
- after the swap the old version drains: its idle connections close at once, and
  each connection given back to it closes instead of idling (unless a query
  already waits for it);
- every connection either version closes is a token the new version may spend to
  open one; so the two together never hold more than the old one held plus the
  surge;
- where the driver allows it and the two versions open connections with the same
  arguments, the new version adopts the old one's idle connections instead
  (``_pg_pool``): a move, which costs no token;
- when the old version has closed, the budget is lifted: the new pool grows to
  its own size and keeps its ``min_pool_size`` floor.

The budget is bookkeeping only; each backend applies it with what its driver
offers (``_pg_pool``, ``_mysql_pool``). While the budget is in force the new
pool's operations pass a :class:`Gate` (one at a time per connection paid for),
and the pool opens the connections it may in the background, so no query waits
for a connection to be opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# asyncio is imported inside the methods that use it: `xresource validate` loads this module
# for the model only and never pays for it (docs/performance.md).


class ConnectionBudget:
    """Connections a new version may open while the version it replaces drains.

    Starts with ``surge`` tokens; opening a connection takes one (waiting while there
    is none), closing one gives one back. :meth:`lift` ends the limit for good.
    """

    __slots__ = ("_changed", "_on_give", "_on_lift", "_tokens", "lifted", "previous", "taker")

    def __init__(self, surge: int, previous: object) -> None:
        self._tokens = surge
        self.previous: object | None = previous
        """The version being replaced: only it may drain into this budget."""
        self.lifted = False
        self.taker: object | None = None
        """The new version's runtime, once it has connected (it may adopt the old one's connections)."""
        import asyncio

        self._changed = asyncio.Event()
        self._on_lift: list[Callable[[ConnectionBudget], None]] = []
        self._on_give: list[Callable[[], None]] = []

    @property
    def tokens(self) -> int:
        return self._tokens

    def try_take(self) -> bool:
        """Take a token if one is free (always succeeds once lifted)."""
        if self.lifted:
            return True
        if self._tokens > 0:
            self._tokens -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a token, waiting until a connection closes or the budget is lifted."""
        while not self.try_take():
            await self.changed()

    def give(self, count: int = 1) -> None:
        """A connection closed (or was not opened after all): one more may open."""
        if not self.lifted and count > 0:
            self._tokens += count
            self._notify()
            for callback in self._on_give:
                callback()

    def offer(self) -> None:
        """The old version has idle connections to hand over: the new one looks (``on_give``)."""
        if not self.lifted:
            self._notify()
            for callback in self._on_give:
                callback()

    async def changed(self) -> None:
        """Wait for the next :meth:`give`, :meth:`notify` or :meth:`lift`."""
        await self._changed.wait()

    def notify(self) -> None:
        """Wake the waiters so they look again (a gate's slot freed up)."""
        self._notify()

    def on_give(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever tokens come back (the new version opens with them)."""
        self._on_give.append(callback)

    def on_lift(self, callback: Callable[[ConnectionBudget], None]) -> None:
        if self.lifted:
            callback(self)
        else:
            self._on_lift.append(callback)

    def lift(self) -> None:
        """The old version has closed: no limit from now on."""
        if self.lifted:
            return
        self.lifted = True
        self.previous = self.taker = None
        self._notify()
        callbacks, self._on_lift = self._on_lift, []
        self._on_give = []
        for callback in callbacks:
            callback(self)

    def _notify(self) -> None:
        import asyncio

        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def __repr__(self) -> str:
        state = "lifted" if self.lifted else f"{self._tokens} token(s)"
        return f"ConnectionBudget({state})"


class Gate:
    """At most ``slots`` operations at once: one per connection the new version has paid for.

    A driver pool opens a connection whenever an operation finds every open one busy,
    right on that operation's path. During a hand-over the new pool's operations
    pass this gate instead, so they wait a moment for an open connection, and the
    connections the budget allows are opened in the background (each adds a slot).
    """

    __slots__ = ("budget", "in_use", "slots")

    def __init__(self, budget: ConnectionBudget, slots: int) -> None:
        self.budget = budget
        self.slots = slots
        self.in_use = 0

    async def enter(self) -> None:
        budget = self.budget
        while self.in_use >= self.slots and not budget.lifted:
            await budget.changed()
        self.in_use += 1

    def leave(self) -> None:
        self.in_use -= 1
        self.budget.notify()

    def add_slot(self, count: int = 1) -> None:
        self.slots += count
        self.budget.notify()


class GatedPoolBase:
    """A driver pool whose checkouts pass a :class:`Gate`; everything else is the pool's own.

    Each backend's subclass gates its driver's checkout methods (``_pg_pool``, ``_mysql_pool``).
    """

    __slots__ = ("gate", "pool")

    def __init__(self, pool: Any, gate: Gate) -> None:
        self.pool = pool
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


def raw(pool: Any) -> Any:
    """The driver's pool behind a gated one (or the pool itself)."""
    return pool.pool if isinstance(pool, GatedPoolBase) else pool


def budget_for(successor: Any, previous: object) -> ConnectionBudget | None:
    """The budget ``successor`` opened its pool under, if it replaces ``previous``."""
    rt = getattr(successor, "_rt", None)
    budget = getattr(rt, "budget", None)
    if isinstance(budget, ConnectionBudget) and budget.previous is previous and not budget.lifted:
        return budget
    return None
