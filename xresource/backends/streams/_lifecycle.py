"""The life of one stream connection: build the runtime, open, end it, close the driver.

``EventStreamResource._connect`` and ``_disconnect`` delegate here. A connect
builds a fresh :class:`StreamRuntime` (its dispatch task first), opens the
driver and restores every subscription, then starts the reconnect supervisor;
a failed first connect is raised (the registry retries it). A disconnect ends
the runtime: every task of the connection is cancelled and awaited, the driver
is closed (a failure there is counted, never raised), and messages still
buffered are counted as dropped. ``XResource.connect`` also calls
``_disconnect`` to clean up after a failed connect: that is not a close, so
open ``messages()`` iterators keep waiting for the registry's recovery.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from xresource.backends.streams._supervisor import supervise
from xresource.backends.streams._tasks import cancel_and_wait, cancelling
from xresource.resource import State

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource
    from xresource.backends.streams._runtime import StreamRuntime

log = logging.getLogger("xresource.streams")


async def open_runtime(stream: EventStreamResource) -> None:
    """A new runtime, opened and subscribed, with its supervisor running (or the error raised)."""
    stale = stream._rt
    if stale is not None:  # what an earlier, failed run left (the registry's recovery)
        await end_runtime(stream, stale)
    stream._connect_failed = False
    stream._successor = None
    rt = stream._rt = stream.runtime_type(stream)
    rt.tasks.spawn(rt.pipeline.run(), name=f"{stream.name}-dispatch")
    stream._status.enter(State.CONNECTING)
    try:
        await stream._open_and_restore()  # the first connect fails loudly; the registry retries it
    except BaseException as exc:
        stream._connect_failed = True
        stream._last_error = stream.translate(exc, "connect").args[0]
        stream._status.enter(State.FAILED)
        raise
    stream._status.enter(State.READY)
    rt.supervisor = rt.tasks.spawn(supervise(stream, rt), name=f"{stream.name}-supervise")


async def close_runtime(stream: EventStreamResource) -> None:
    """End the runtime; after a real close (not a failed connect's clean-up) end the iterators too."""
    final = not stream._connect_failed
    stream._connect_failed = False
    rt = stream._rt
    if rt is not None:
        await end_runtime(stream, rt)
    if final:
        stream._status.enter(State.CLOSED)
        if stream._successor is None:  # a replaced instance handed its iterators on
            stream._counters.dropped += stream._regs.end_iterators(None)


async def end_runtime(stream: EventStreamResource, rt: StreamRuntime) -> None:
    rt.closing = True
    await rt.tasks.close()
    await close_driver(stream, "close")
    # Messages still buffered at close are never handled: say so in the counters.
    stream._counters.dropped += rt.pipeline.discard_buffered()
    if stream._rt is rt:
        stream._rt = None


async def close_driver(stream: EventStreamResource, why: str) -> None:
    """The backend's ``_close()``, which must finish: a failure is logged and counted, never raised."""
    try:
        await stream._close()
    except (Exception, asyncio.CancelledError) as exc:  # closing must finish; say why it was unclean
        if isinstance(exc, asyncio.CancelledError) and cancelling():
            raise
        stream._counters.cleanup_errors += 1
        log.debug("%s: %s: %s", stream.label, why, stream.scrub(str(exc) or type(exc).__name__))


async def release(stream: EventStreamResource) -> None:
    """Stop receiving for good (handed over): end the receive loop, hand over what is buffered."""
    rt = stream._rt
    if rt is not None:
        rt.released = True
        await stream._stop_receiving(rt)
        await rt.pipeline.drain()


async def stop_receiving(rt: StreamRuntime) -> None:
    await cancel_and_wait(rt.supervisor)
    rt.supervisor = None
