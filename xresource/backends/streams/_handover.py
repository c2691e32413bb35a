"""Reload hand-over: a new, connected instance takes the stream over from the one it replaces.

``take_over(new, previous)`` moves the user's ``Registrations`` (handlers,
subscriptions, open iterators, ``on_replaced`` callbacks) to ``new``, then
moves *delivery*: ``new`` subscribes to everything first (make), and only then
does ``previous`` stop receiving and hand over what it buffered (break). Where
the two overlap, a cut decides which instance delivers which message, so that
user code sees each message once, in order; messages both received and only
one delivered are counted in ``counters.duplicates``. How the cut is found
depends on what the protocol offers:

- ``marker_cut`` (Redis Pub/Sub, MQTT): both instances subscribe to a private
  channel and one marker is published on it. The broker puts it at the same
  place in both streams: the old instance delivers what came before it, the
  new one what came after. Exact on a broker that keeps publish order.
- ``splice`` (the default: WebSocket, SSE without ids): the new instance holds
  what it receives; the old one keeps delivering until it delivers a message
  equal to the first one the new instance holds (same channel, event and raw
  payload); the new one then skips what the old one delivered. A heuristic
  for streams with no ids: measured, not guaranteed (see docs/hot-reload.md).
- Backends with durable delivery refine ``_hand_over_from``: Kafka cuts at
  partition offsets (or, in a consumer group, commits and resumes), RabbitMQ
  consumes the same queues, SSE resumes with ``Last-Event-ID``, and MQTT with a
  persistent session moves the session.

If a step before the break fails, ``take_over`` raises, ``previous`` keeps
delivering as before, and the registry keeps it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

from xresource.backends.streams._message import Message
from xresource.backends.streams._registrations import Registrations
from xresource.errors import XResourceStateError
from xresource.resource import State

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource

log = logging.getLogger("xresource.streams")

CUT_WAIT = 1.0
"""Seconds a splice waits for traffic to find the cut; a quiet stream needs no cut."""


async def take_over(new: EventStreamResource, previous: EventStreamResource) -> None:
    rt = new._rt
    if rt is None or new.connection_state is not State.READY:
        raise XResourceStateError(f"{new.label}: connect() before take_over()")
    own, regs = new._regs, previous._regs
    regs.absorb(own)  # anything registered on the new instance before it took over
    # What a server pushed before the take-over (SSE, WebSocket) was received for nobody:
    # the old instance delivers it.
    rt.pipeline.discard_buffered()
    new._regs = rt.pipeline.regs = regs
    try:
        if previous._rt is None or previous.connection_state is not State.READY:
            # Not delivering (never connected, closed, failed or reconnecting): nothing to cut.
            await new._restore_subscriptions()
            if previous._rt is not None:
                await previous._release()
        else:
            await new._hand_over_from(previous)
    except BaseException:
        # Nothing was broken yet (strategies release ``previous`` last): it keeps delivering.
        new._regs = rt.pipeline.regs = Registrations()
        _open_gates(new, previous)
        raise
    previous._successor = new
    new._counters.handovers += 1
    log.info(
        "%s: took over %d subscription(s) from the replaced instance", new.label, len(regs.subscriptions)
    )
    for callback in list(regs.replaced_callbacks):
        try:
            result = callback(previous, new)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s: on_replaced callback raised", new.label)


def _open_gates(*streams: EventStreamResource) -> None:
    for stream in streams:
        rt = stream._rt
        if rt is None:
            continue
        pipe = rt.pipeline
        pipe.gate = None
        hold, pipe.hold = pipe.hold, None
        if hold is not None and not hold.done():
            hold.set_result(None)
        pipe.refresh()


def _hold(stream: EventStreamResource) -> asyncio.Future[None]:
    """Make ``stream``'s dispatcher wait (its receive loop keeps buffering) until the cut is made."""
    rt = stream._rt
    assert rt is not None
    hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    rt.pipeline.hold = hold
    rt.pipeline.refresh()
    return hold


def _identity(message: Message) -> Hashable:
    raw = message.raw
    return (message.channel, message.event, raw if raw is not None else repr(message.data))


# ---- marker: the broker orders one marker into both streams ---------------------------------


async def marker_cut(
    new: EventStreamResource,
    previous: EventStreamResource,
    channel: str,
    options: dict[str, Any],
    send: Callable[[str, bytes], Awaitable[Any]],
    wait: float,
) -> None:
    """Cut at a marker published on the private ``channel`` (see the module docstring)."""
    token = uuid.uuid4().hex.encode()
    loop = asyncio.get_running_loop()
    seen_new: asyncio.Future[None] = loop.create_future()
    seen_old: asyncio.Future[None] = loop.create_future()
    new_pipe, old_pipe = new._pipeline(), previous._pipeline()
    counters = new._counters

    def before_marker_on_new(message: Message) -> bool:
        if message.channel == channel:
            if message.raw == token and not seen_new.done():
                seen_new.set_result(None)
            return False
        if seen_new.done():
            return True
        counters.duplicates += 1  # the old instance delivers this one
        return False

    def until_marker_on_old(message: Message) -> bool:
        if message.channel == channel:
            if message.raw == token and not seen_old.done():
                seen_old.set_result(None)
            return False
        return not seen_old.done()

    hold = _hold(new)
    new_pipe.gate = before_marker_on_new
    new_pipe.refresh()
    await new._restore_subscriptions()  # make: everything the old instance has, on the new one
    try:
        await new._subscribe_remote(channel, options)
        await previous._subscribe_remote(channel, options)
        old_pipe.gate = until_marker_on_old
        old_pipe.refresh()
        await send(channel, token)
        async with asyncio.timeout(wait):
            await asyncio.gather(asyncio.shield(seen_new), asyncio.shield(seen_old))
    except TimeoutError:
        log.warning("%s: hand-over marker not seen within %ss; cutting without it", new.label, wait)
    # Break: the old instance hands over what it buffered before the marker, then the new one goes on.
    await previous._release()
    new_pipe.gate = None
    hold.set_result(None)
    new_pipe.hold = None
    new_pipe.refresh()
    try:
        await new._unsubscribe_remote(channel)
    except Exception as exc:  # noqa: BLE001 - a private channel; it ends with the connection anyway
        new._counters.cleanup_errors += 1
        log.debug("%s: unsubscribe from the hand-over marker: %s", new.label, new.scrub(repr(exc)))


# ---- splice: no ids, no marker: match the first message the new instance holds -----------------


class _Splice:
    """Finds where the new instance's stream joins what the old one delivered."""

    def __init__(self, new: EventStreamResource) -> None:
        self.counters = new._counters
        self.delivered_by_old: list[Hashable] = []
        self.held_by_new: list[tuple[Hashable, Message]] = []
        self.cut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.limit = max(16, new.queue_size)

    def on_old(self, message: Message) -> bool:
        if self.cut.done():
            return False  # past the cut: the new instance delivers it
        self.delivered_by_old.append(_identity(message))
        if len(self.delivered_by_old) > self.limit:
            del self.delivered_by_old[0]
        self._check()
        return True

    def on_new(self, message: Message) -> bool:
        if not self.cut.done():
            self.held_by_new.append((_identity(message), message))
            self._check()
        return True

    def _check(self) -> None:
        if self.held_by_new and self.held_by_new[0][0] in self.delivered_by_old and not self.cut.done():
            self.cut.set_result(None)

    def duplicates(self) -> set[int]:
        """Ids of held messages the old instance already delivered (the overlap)."""
        if not self.held_by_new:
            return set()
        first = self.held_by_new[0][0]
        old = self.delivered_by_old
        if first not in old:
            return set()
        start = len(old) - 1 - old[::-1].index(first)
        overlap = old[start:]
        held = [identity for identity, _ in self.held_by_new[: len(overlap)]]
        if held != overlap[: len(held)]:
            return set()  # the streams differ: skip nothing rather than the wrong thing
        return {id(message) for _, message in self.held_by_new[: len(held)]}


async def splice(new: EventStreamResource, previous: EventStreamResource, wait: float = CUT_WAIT) -> None:
    """Cut by matching payloads (see the module docstring)."""
    finder = _Splice(new)
    new_pipe, old_pipe = new._pipeline(), previous._pipeline()
    hold = _hold(new)
    new_pipe.gate = finder.on_new
    new_pipe.refresh()
    await new._restore_subscriptions()
    old_pipe.gate = finder.on_old
    old_pipe.refresh()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            await asyncio.shield(finder.cut)
    if not finder.cut.done():
        finder.cut.set_result(None)
    await previous._release()
    skip = finder.duplicates()
    new.counters.duplicates += len(skip)
    new_pipe.skip = skip or None
    new_pipe.gate = None
    hold.set_result(None)
    new_pipe.hold = None
    new_pipe.refresh()
