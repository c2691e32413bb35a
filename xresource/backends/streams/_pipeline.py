"""The delivery path of one connection: buffer, overflow policy, handlers and iterators.

A receive loop takes the connection's pipeline once (``self._pipeline()``) and
hands every message over with the one idiom::

    if not pipe.offer(message):
        await pipe.deliver(message)

``offer`` is the inline fast path: under ``block``, while every handler is a
plain function (none is ``async def``), no ``messages()`` iterator is open,
nothing is buffered and no hand-over is under way, the message is dispatched
right there, in the receive loop. A synchronous handler cannot wait, so the
buffer hop (a task switch per message) would buy nothing; a call to ``offer``
also costs no coroutine. Otherwise ``deliver`` buffers the message (or, under
``drop_oldest``, drops the oldest buffered one) and the dispatcher task hands
it over. Order is kept in every case.

Backpressure
------------
Received messages go through one bounded buffer of ``queue_size`` messages
between the receive loop and the handlers, and each ``messages()`` iterator has
a buffer of the same size. When a buffer is full, ``overflow`` decides:

- ``block`` (the default): the receive loop waits until the handlers catch up,
  so the driver stops reading and the broker's own flow control applies (TCP
  for Redis, prefetch for RabbitMQ, fetch for Kafka). Nothing is lost, but one
  slow handler, or an iterator nobody reads, slows every subscriber down.
- ``drop_oldest``: the oldest buffered message is dropped to make room; every
  drop is counted in ``counters.dropped`` (``stream_stats()["dropped"]``, and so
  in ``/metrics``). The receive loop never waits for a handler.

Handlers run one message at a time, in arrival order; a handler that raises is
logged and counted (``handler_errors``) and does not stop the other handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from xresource.backends.streams._message import MESSAGE_EVENT, Handler, Message, StreamCounters, handler_names
from xresource.backends.streams._registrations import Registrations
from xresource.backends.streams._tasks import TaskOwner

log = logging.getLogger("xresource.streams")

Gate = Callable[[Message], bool]
"""A filter a hand-over puts in front of the buffer: False drops the message."""


class _Barrier:
    """Put in the buffer by ``drain()``: resolved when the dispatcher reaches it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Pipeline:
    """Buffer and dispatcher of one connection, delivering to one ``Registrations``."""

    __slots__ = (
        "blocker",
        "counters",
        "dispatching",
        "gate",
        "hold",
        "label",
        "open",
        "overflow",
        "owner",
        "queue",
        "regs",
        "running",
        "skip",
        "tasks",
    )

    def __init__(
        self,
        label: str,
        counters: StreamCounters,
        regs: Registrations,
        tasks: TaskOwner,
        queue_size: int,
        overflow: str,
        owner: Callable[[], object] = lambda: None,
    ) -> None:
        self.label = label
        self.owner = owner  # the resource, weakly (read by tracing only: see xresource.telemetry)
        self.counters = counters
        self.regs = regs
        self.tasks = tasks
        self.overflow = overflow
        self.queue: asyncio.Queue[Message | _Barrier] = asyncio.Queue(maxsize=queue_size)
        self.dispatching = False  # a message is being handed over (or an inline one left work)
        self.running = False  # the dispatcher task is there to drain the buffer
        self.blocker: asyncio.Task[None] | None = None  # finishes what an inline dispatch left
        self.gate: Gate | None = None
        self.hold: asyncio.Future[None] | None = None  # the dispatcher waits for it (hand-over)
        self.skip: set[int] | None = None  # ids of held messages a hand-over found duplicated
        self.open = False  # running, "block", no gate, no hold: offer() may dispatch inline
        self.refresh()

    def refresh(self) -> None:
        self.open = self.running and self.overflow == "block" and self.gate is None and self.hold is None

    # ---- the receive side -------------------------------------------------------------------

    def offer(self, message: Message) -> bool:
        """Dispatch ``message`` right now if the inline path applies; False if it does not."""
        if not (self.open and self.regs.fast and not self.dispatching and self.queue.empty()):
            return False
        self.counters.received += 1
        handlers = self.regs.handlers
        if handlers:
            # The handler loop of ``_calls``, unrolled for the usual message (no
            # subscription or event name of its own): no generator per message.
            if message.subscription is None and message.event is None:
                channel = message.channel
                names: tuple[str | None, ...] = (MESSAGE_EVENT, channel if channel != MESSAGE_EVENT else None)
            else:
                names = handler_names(message)
            data = message.data
            index = 0
            for name in names:
                index += 1
                if not name:
                    continue
                found = handlers.get(name)
                if not found:
                    continue
                snapshot = tuple(found)  # a handler may call off()/unsubscribe()
                position = 0
                for handler in snapshot:
                    position += 1
                    try:
                        result = handler(data)
                    except Exception:  # noqa: BLE001 - counted and logged in _failed
                        self._failed(handler, name)
                        continue
                    if result is not None and inspect.isawaitable(result):
                        # A plain function gave back an awaitable (``lambda d: q.put(d)``): finish
                        # this message in a task, and keep later messages behind it, in order.
                        rest = self._calls(data, names, index - 1, snapshot, position)
                        self.dispatching = True
                        self.blocker = self.tasks.spawn(
                            self._finish((result, handler, name), rest), name=f"{self.label}-handler"
                        )
                        return True
        self.counters.delivered += 1
        return True

    async def deliver(self, message: Message) -> None:
        """Buffer ``message`` under the overflow policy (after the inline path declined it)."""
        gate = self.gate
        if gate is not None and not gate(message):
            return
        self.counters.received += 1
        queue = self.queue
        if self.overflow == "block":
            await queue.put(message)  # waits while the buffer is full
            return
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                dropped = queue.get_nowait()
                if type(dropped) is _Barrier:
                    dropped.done.set_result(None)  # nothing older is left to wait for
                else:
                    self.counters.dropped += 1
        queue.put_nowait(message)

    # ---- the dispatcher ---------------------------------------------------------------------

    async def run(self) -> None:
        """The dispatcher task: hand buffered messages over, one at a time, in order."""
        self.running = True
        self.refresh()
        try:
            while True:
                item = await self.queue.get()
                blocker = self.blocker
                if blocker is not None:
                    await asyncio.wait([blocker])  # what an inline dispatch left comes first
                if type(item) is _Barrier:
                    if not item.done.done():
                        item.done.set_result(None)
                    continue
                hold = self.hold
                if hold is not None:
                    await hold
                skip = self.skip
                if skip is not None and id(item) in skip:
                    skip.discard(id(item))
                    if not skip:
                        self.skip = None
                    continue
                assert isinstance(item, Message)
                self.dispatching = True
                try:
                    await self.dispatch(item)
                finally:
                    self.dispatching = False
        finally:
            self.running = False
            self.refresh()

    async def dispatch(self, message: Message) -> None:
        for awaitable, handler, name in self._handle(message):
            try:
                await awaitable
            except Exception:  # noqa: BLE001 - counted and logged in _failed
                self._failed(handler, name)
        iterators = self.regs.iterators
        if iterators:
            for queue in tuple(iterators):  # an iterator may close meanwhile
                if queue.full():
                    if self.overflow == "drop_oldest":
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()
                            self.counters.dropped += 1
                    else:
                        await queue.put(message)
                        continue
                queue.put_nowait(message)
        self.counters.delivered += 1

    def _handle(self, message: Message) -> Iterator[tuple[Awaitable[Any], Handler, str]]:
        """The handler loop: call each handler of ``message`` in order (see ``_calls``)."""
        return self._calls(message.data, handler_names(message), 0, None, 0)

    def _calls(
        self,
        data: Any,
        names: tuple[str | None, ...],
        index: int,
        snapshot: tuple[Handler, ...] | None,
        position: int,
    ) -> Iterator[tuple[Awaitable[Any], Handler, str]]:
        """Call the handlers of ``names`` from ``names[index]``, ``snapshot[position]`` on.

        A generator: a handler's awaitable result is yielded, so the caller awaits
        it before the next handler runs (the dispatcher) or finishes the message in
        a task (the inline path, which resumes here after its first awaitable).
        A name's handlers are read when the loop reaches it.
        """
        handlers = self.regs.handlers
        count = len(names)
        while index < count:
            name = names[index]
            index += 1
            if not name:
                continue
            if snapshot is None:
                found = handlers.get(name)
                snapshot = tuple(found) if found else ()  # a handler may call off()/unsubscribe()
                position = 0
            for handler in snapshot[position:]:
                try:
                    result = handler(data)
                except Exception:  # noqa: BLE001 - counted and logged in _failed
                    self._failed(handler, name)
                    continue
                if result is not None and inspect.isawaitable(result):
                    yield result, handler, name
            snapshot = None

    async def _finish(
        self,
        first: tuple[Awaitable[Any], Handler, str],
        rest: Iterator[tuple[Awaitable[Any], Handler, str]],
    ) -> None:
        try:
            for awaitable, handler, name in itertools.chain((first,), rest):  # lazily: in turn
                try:
                    await awaitable
                except Exception:  # noqa: BLE001 - counted and logged in _failed
                    self._failed(handler, name)
            self.counters.delivered += 1
        finally:
            if self.blocker is asyncio.current_task():
                self.blocker = None
                self.dispatching = False

    def _failed(self, handler: Handler, name: str) -> None:
        self.counters.handler_errors += 1
        log.exception("%s: handler %s for %r raised", self.label, _name_of(handler), name)

    # ---- for lifecycle and hand-over --------------------------------------------------------

    async def drain(self) -> None:
        """Wait until everything buffered so far has been handed over."""
        if not self.running:
            return
        barrier = _Barrier()
        await self.queue.put(barrier)
        await barrier.done
        blocker = self.blocker
        if blocker is not None:
            await asyncio.wait([blocker])

    def discard_buffered(self) -> int:
        """Forget what is buffered (at close); returns how many messages that was."""
        count = 0
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if type(item) is _Barrier:
                if not item.done.done():
                    item.done.set_result(None)
            else:
                count += 1
        return count

    def buffered(self) -> int:
        return self.queue.qsize()


def _name_of(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__name__
