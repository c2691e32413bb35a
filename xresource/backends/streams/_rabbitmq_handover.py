"""RabbitMQ's reload hand-over: the new instance consumes the same queues, then the old one stops.

On the same broker, exchange and queue settings, the new instance takes over
the old one's private queue names and consumes those queues and the shared
ones (make); then the old consumers are cancelled, their callbacks under way
finish (and acknowledge), and the old buffer is handed over (break). Messages
the old consumer had not acknowledged go back to the queue, for the new one.
Elsewhere the queues are not the same, and the payload splice applies.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from xresource.backends.streams import _handover

if TYPE_CHECKING:
    from xresource.backends.streams.rabbitmq import RabbitMQResource

log = logging.getLogger("xresource.streams.rabbitmq")

_SAME_QUEUES = ("connection_string", "exchange", "exchange_type", "queue_expires")


async def hand_over(new: RabbitMQResource, previous: RabbitMQResource) -> None:
    if any(getattr(new, name) != getattr(previous, name) for name in _SAME_QUEUES):
        await _handover.splice(new, previous)
        return
    rt = new._rt
    assert rt is not None
    adopted = dict(previous._queue_names)
    new._queue_names.update(adopted)
    hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    rt.pipeline.hold = hold  # the old instance's buffer goes first
    rt.pipeline.refresh()
    try:
        try:
            await new._restore_subscriptions()  # make: consume the very same queues
        except BaseException:
            for channel in adopted:
                new._queue_names.pop(channel, None)
            raise
        for channel in adopted:  # the queues are the new instance's now: the old one must not delete them
            previous._queue_names.pop(channel, None)
        await previous._release()  # break
    finally:
        rt.pipeline.hold = None
        rt.pipeline.refresh()
        hold.set_result(None)


async def release(stream: RabbitMQResource) -> None:
    """Cancel every consumer, let callbacks under way finish, hand over the buffer."""
    rt = stream._rt
    if rt is None:
        return
    rt.released = True
    for channel in list(rt.consumer_tags):
        queue, tag = rt.queues.pop(channel, None), rt.consumer_tags.pop(channel)
        if queue is None:
            continue
        try:
            await asyncio.wait_for(queue.cancel(tag), stream.timeout)
        except Exception as exc:  # noqa: BLE001 - its unacknowledged messages return to the queue
            stream._counters.cleanup_errors += 1
            log.debug("%s: cancel %r: %s", stream.label, channel, stream.scrub(repr(exc)))
    try:
        async with asyncio.timeout(stream.timeout):
            if rt.busy:  # consumer callbacks under way finish (and acknowledge)
                rt.idle = asyncio.get_running_loop().create_future()
                await rt.idle
    except TimeoutError:
        log.warning("%s: consumer callbacks still running after %ss", stream.label, stream.timeout)
    await stream._stop_receiving(rt)
    await rt.pipeline.drain()
