"""What user code registered on a stream: handlers, subscriptions, open iterators.

One ``Registrations`` object per logical stream. It outlives reconnects (each
new connection subscribes to what it lists) and, on a reload, moves from the
replaced instance to its successor (``take_over``), so the user's handlers and
``messages()`` iterators never notice the swap.
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xresource.backends.streams._message import Handler, Message
from xresource.errors import XResourceConnectionError

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource

ReplacedCallback = Callable[["EventStreamResource", "EventStreamResource"], Any]
"""``callback(old, new)``: called after a reload handed a stream over to a new instance."""


class _End:
    """What an iterator's queue receives when the stream ends: cleanly or with an error."""

    __slots__ = ("error",)

    def __init__(self, error: XResourceConnectionError | None) -> None:
        self.error = error


class Registrations:
    """Handlers, subscriptions and open iterators of one logical stream (see the module docstring)."""

    __slots__ = ("fast", "handlers", "inline", "iterators", "replaced_callbacks", "subscriptions")

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        # Queue -> its iterator, weakly: an iterator dropped without aclose() is collected
        # (and detaches itself) instead of being kept alive here.
        self.iterators: dict[asyncio.Queue[Message | _End], weakref.ref[MessageIterator]] = {}
        self.replaced_callbacks: list[ReplacedCallback] = []
        self.inline = True  # no handler is a coroutine function
        self.fast = True  # inline, and no iterator open: a receive loop may dispatch in place

    def refresh(self) -> None:
        """Recompute the fast-path flags after handlers or iterators changed."""
        self.inline = not any(_is_async(h) for found in self.handlers.values() for h in found)
        self.fast = self.inline and not self.iterators

    def add_handler(self, event: str, handler: Handler) -> None:
        self.handlers.setdefault(event, []).append(handler)
        self.refresh()

    def remove_handler(self, event: str, handler: Handler | None) -> None:
        if handler is None:
            self.handlers.pop(event, None)
        else:
            found = self.handlers.get(event)
            if found and handler in found:
                found.remove(handler)
                if not found:
                    del self.handlers[event]
        self.refresh()

    def copy(self) -> Registrations:
        """Handlers and subscriptions (not iterators): what a model copy starts with."""
        copied = Registrations()
        copied.handlers = {event: list(found) for event, found in self.handlers.items()}
        copied.subscriptions = {channel: dict(options) for channel, options in self.subscriptions.items()}
        copied.refresh()
        return copied

    def absorb(self, other: Registrations) -> None:
        """Add what was registered on ``other`` (a new version, before it took over)."""
        for event, found in other.handlers.items():
            self.handlers.setdefault(event, []).extend(
                h for h in found if h not in self.handlers.get(event, ())
            )
        for channel, options in other.subscriptions.items():
            self.subscriptions.setdefault(channel, options)
        for queue, ref in list(other.iterators.items()):
            iterator = ref()
            if iterator is not None:
                iterator._regs = self
                self.iterators[queue] = ref
        other.iterators.clear()
        self.replaced_callbacks.extend(
            c for c in other.replaced_callbacks if c not in self.replaced_callbacks
        )
        self.refresh()

    def end_iterators(self, error: XResourceConnectionError | None) -> int:
        """End every open iterator: cleanly (``error`` None) or by raising ``error`` in it.

        Returns how many buffered messages were discarded to make room for the end mark.
        """
        end = _End(error)
        discarded = 0
        for queue in list(self.iterators):
            while True:
                try:
                    queue.put_nowait(end)
                    break
                except asyncio.QueueFull:
                    queue.get_nowait()
                    discarded += 1
            if error is not None:
                # A failed iterator is done: it must not hold up delivery after a recovery.
                self.iterators.pop(queue, None)
        self.refresh()
        return discarded


class MessageIterator:
    """What ``messages()`` returns: registered at creation, so nothing is missed before iterating.

    It ends (``StopAsyncIteration``) when the resource is disconnected, and raises
    ``XResourceConnectionError`` when the stream gave up reconnecting. A reload
    that replaces the resource moves it to the new instance: it keeps yielding.
    """

    __slots__ = ("__weakref__", "_regs", "queue")

    def __init__(self, regs: Registrations, queue_size: int) -> None:
        self._regs: Registrations | None = regs
        self.queue: asyncio.Queue[Message | _End] = asyncio.Queue(maxsize=queue_size)
        regs.iterators[self.queue] = weakref.ref(self)
        regs.refresh()

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> Message:
        if self._regs is None and self.queue.empty():
            raise StopAsyncIteration
        item = await self.queue.get()
        if type(item) is _End:
            self._detach()
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        assert isinstance(item, Message)
        return item

    async def aclose(self) -> None:
        """Stop receiving; buffered messages are discarded."""
        self._detach()
        self._discard()

    async def __aenter__(self) -> MessageIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _detach(self) -> None:
        regs, self._regs = self._regs, None
        if regs is not None:
            regs.iterators.pop(self.queue, None)
            regs.refresh()

    def _discard(self) -> None:
        # Free a dispatcher that waits (under "block") for room in this queue.
        while not self.queue.empty():
            self.queue.get_nowait()

    def __del__(self) -> None:
        # An iterator dropped without aclose() must not hold up delivery under "block".
        self._detach()


def _is_async(handler: Handler) -> bool:
    """A coroutine function (or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__)
