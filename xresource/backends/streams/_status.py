"""``ConnectionStatus``: the observable state machine of one stream instance."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from xresource.errors import XResourceTimeoutError
from xresource.resource import State

log = logging.getLogger("xresource.streams")


class ConnectionStatus:
    """``new -> connecting -> ready <-> reconnecting -> failed``, and ``closed``.

    Lives as long as the resource instance (not one connection): the history and
    the waiters span reconnects and ``connect()`` after a failure.
    """

    __slots__ = ("history", "label", "state", "waiters")

    def __init__(self, label: str) -> None:
        self.label = label
        self.state = State.NEW
        self.history: collections.deque[tuple[float, State]] = collections.deque(maxlen=64)
        self.waiters: list[asyncio.Queue[State]] = []

    def enter(self, state: State) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        self.history.append((time.monotonic(), state))
        for waiter in self.waiters:
            waiter.put_nowait(state)
        log.debug("%s: %s -> %s", self.label, previous.value, state.value)

    async def wait_while(self, condition: Callable[[], bool]) -> None:
        """Wait, waking at every transition, until ``condition()`` is false or the stream ended."""
        seen: asyncio.Queue[State] = asyncio.Queue()
        self.waiters.append(seen)
        try:
            while condition() and self.state not in (State.FAILED, State.CLOSED):
                await seen.get()
        finally:
            self.waiters.remove(seen)

    async def wait_for(self, states: tuple[State, ...], timeout: float | None) -> State:
        """Wait until one of ``states`` is entered; every transition is seen, in order."""
        if not states:
            raise ValueError("wait_for_state needs at least one state")
        try:
            async with asyncio.timeout(timeout):
                if self.state in states:
                    return self.state
                # A queue per waiter, so that no transition is missed between two wake-ups.
                seen: asyncio.Queue[State] = asyncio.Queue()
                self.waiters.append(seen)
                try:
                    while True:
                        entered = await seen.get()
                        if entered in states:
                            return entered
                finally:
                    self.waiters.remove(seen)
        except TimeoutError:
            wanted = "/".join(s.value for s in states)
            raise XResourceTimeoutError(
                f"{self.label}: still {self.state.value} after {timeout}s waiting for {wanted}"
            ) from None
