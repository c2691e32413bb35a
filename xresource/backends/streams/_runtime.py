"""``StreamRuntime``: what one connection of a stream holds, from ``connect()`` to ``disconnect()``.

Built by ``connect()`` into the resource's ``_rt`` slot and dropped by
``disconnect()``. Reconnects happen inside one runtime: the driver objects a
backend keeps in its runtime subclass are replaced, the task owner, the buffer
and the bookkeeping stay. What the user registered lives in ``Registrations``
instead, which outlives runtimes and instances.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from xresource.backends.streams._pipeline import Pipeline
from xresource.backends.streams._tasks import TaskOwner

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource


class StreamRuntime:
    """The per-connection state shared by every stream backend; backends subclass it for driver slots."""

    __slots__ = ("applied", "closing", "epoch", "inflight", "pipeline", "released", "supervisor", "tasks")

    def __init__(self, resource: EventStreamResource) -> None:
        label = resource.label
        self.tasks = TaskOwner(label)
        self.pipeline = Pipeline(
            label,
            resource._counters,
            resource._regs,
            self.tasks,
            resource.queue_size,
            resource.overflow,
            weakref.ref(resource),
        )
        self.closing = False  # disconnect() is under way: a lost connection is not news
        self.released = False  # handed over to a successor: stop receiving, never reconnect
        self.supervisor: asyncio.Task[None] | None = None
        # Subscriptions the server holds on the current connection (cleared at every open)
        # and the (un)subscribe under way per channel: calls for one channel take turns,
        # different channels never wait for each other, and no lock spans network I/O.
        self.applied: dict[str, dict[str, Any]] = {}
        self.inflight: dict[str, asyncio.Future[None]] = {}
        self.epoch = 0  # bumped by every lost or restored connection

    async def restore(self, stream: EventStreamResource) -> None:
        """Subscribe and unsubscribe until the server matches the registrations (they may change meanwhile)."""
        while True:
            wanted = stream._regs.subscriptions
            pending = [c for c, options in wanted.items() if self.applied.get(c) != options]
            pending += [c for c in self.applied if c not in wanted]
            if not pending:
                return  # the caller enters "ready" before anything else runs
            for channel in pending:
                await self.sync(stream, channel)

    async def sync(self, stream: EventStreamResource, channel: str) -> None:
        """Make the server's subscription to ``channel`` match the registrations.

        Calls for one channel take turns (a subscribe and an unsubscribe must not
        overtake each other on the wire); other channels never wait.
        """
        while (busy := self.inflight.get(channel)) is not None:
            await asyncio.wait([busy])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inflight[channel] = done
        try:
            wanted = stream._regs.subscriptions.get(channel)
            if wanted is not None and self.applied.get(channel) != wanted:
                await stream._subscribe_remote(channel, wanted)
                self.applied[channel] = wanted
            elif wanted is None and channel in self.applied:
                del self.applied[channel]
                await stream._unsubscribe_remote(channel)
        finally:
            del self.inflight[channel]
            done.set_result(None)


RuntimeType = type[StreamRuntime]
"""For ``runtime_type`` in backends, where ``type`` names the model field."""
