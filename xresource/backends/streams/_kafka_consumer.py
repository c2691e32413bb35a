"""Kafka's consumer beyond what aiokafka does: reload hand-over, leaving a group, a forced stop.

Hand-over (``kafka``'s module docstring says what it guarantees).

Without a consumer group: cut at partition offsets. The new consumer subscribes
and notes where it starts in each partition; the old one keeps delivering every
record before those offsets, drops the rest (the new one has them), and stops
once it has fetched up to them; the new one delivers from there.

In a consumer group: break, then make. The old consumer finishes the batch it
is handing over, waits until its buffer is handled, commits (every fetched
record is handled by then), and leaves the group; the new one joins and
continues from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from xresource.backends.streams._message import Message
from xresource.backends.streams._tasks import cancel_and_wait, cancelling

if TYPE_CHECKING:
    from xresource.backends.streams.kafka import KafkaResource

log = logging.getLogger("xresource.streams.kafka")


async def hand_over(new: KafkaResource, previous: KafkaResource) -> None:
    if new.consumer_group is not None and new.consumer_group == previous.consumer_group:
        await previous._release()  # finish the batch, hand over, commit, leave the group
        try:
            await new._restore_subscriptions()  # join; continue from the committed offsets
        except Exception as exc:  # noqa: BLE001 - past the break: recover, never undo
            log.warning("%s: subscribing after the hand-over failed: %s", new.label, exc)
            await new._restart()
        return
    await _cut_at_offsets(new, previous)


async def _cut_at_offsets(new: KafkaResource, previous: KafkaResource) -> None:
    rt, old = new._rt, previous._rt
    assert rt is not None
    assert old is not None
    pipe = rt.pipeline
    hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pipe.hold = hold  # the old instance's records before the cut go first
    pipe.refresh()
    first: dict[tuple[str, int], int] = {}

    def note_first(message: Message) -> bool:
        first.setdefault((message.channel, message.meta["partition"]), message.meta["offset"])
        return True

    pipe.gate = note_first  # the receive loop may fetch while positions are being read
    try:
        await new._restore_subscriptions()
        start: dict[Any, int] = {}
        for tp in rt.consumer.assignment():
            position = await rt.consumer.position(tp)
            # Where the new consumer began: its first record if one came already, else its position.
            start[tp] = first.get((tp.topic, tp.partition), position)
        pipe.gate = None

        def before_start(message: Message) -> bool:
            meta = message.meta
            # The driver's TopicPartition is a named tuple: a plain tuple finds it.
            begin = start.get((message.channel, meta["partition"]))
            return begin is None or meta["offset"] < begin

        old.pipeline.gate = before_start
        old.pipeline.refresh()
        await _until_caught_up(new, previous, start)
        await previous._release()
    finally:
        pipe.gate = pipe.hold = None
        hold.set_result(None)
        pipe.refresh()


async def _until_caught_up(new: KafkaResource, previous: KafkaResource, start: dict[Any, int]) -> None:
    """Wait until ``previous`` has fetched every record before ``start`` (bounded by ``timeout``)."""
    old = previous._rt
    assert old is not None
    consumer = old.consumer
    try:
        async with asyncio.timeout(new.timeout):
            while True:
                old.progress.clear()  # set by the receive loop after every batch: no polling
                behind = False
                for tp, begin in start.items():
                    if tp in consumer.assignment() and await consumer.position(tp) < begin:
                        behind = True
                if not behind:
                    return
                await old.progress.wait()
    except TimeoutError:
        log.warning("%s: the replaced instance did not catch up within %ss", new.label, new.timeout)


async def leave_group(stream: KafkaResource) -> None:
    """``_release`` in a consumer group: hand over, commit what was handled, leave."""
    rt = stream._rt
    if rt is None:
        return
    rt.released = True  # the receive loop ends after the batch it is handing over
    supervisor = rt.supervisor
    if supervisor is not None and rt.fetching:
        await cancel_and_wait(supervisor)  # waiting for records: nothing in hand to lose
    elif supervisor is not None:
        await asyncio.wait([supervisor])
    rt.supervisor = None
    await rt.pipeline.drain()
    consumer, rt.consumer = rt.consumer, None
    if consumer is None:
        return
    try:
        await asyncio.wait_for(consumer.commit(), stream.timeout)  # everything fetched is handled
    except Exception as exc:  # noqa: BLE001 - the new consumer may see some records again
        stream._counters.cleanup_errors += 1
        log.warning("%s: commit before leaving the group failed: %s", stream.label, stream.scrub(str(exc)))
    await stream._stop_client(consumer, stream.timeout)  # leaves the group


async def stop_client(stream: KafkaResource, client: Any, patience: float) -> None:
    """``client.stop()``, and when it is cut short, an end to what it did not reach."""
    try:
        if not getattr(client, "_closed", False):  # a stop() cut short before: force the rest
            await asyncio.wait_for(client.stop(), patience)
            return
    except (Exception, asyncio.CancelledError) as exc:  # closing is best effort
        # aiokafka lets the CancelledError of its own cancelled tasks escape stop():
        # not ours unless this task is being cancelled.
        if isinstance(exc, asyncio.CancelledError) and cancelling():
            raise
        stream._counters.cleanup_errors += 1
        log.debug("%s: stop: %s", stream.label, stream.scrub(repr(exc)))
    # stop() was cut short (it retries its last commit while the broker is
    # gone): end the tasks and sockets it did not reach, or they would live
    # on, heartbeating into the void, next to the new client.
    coordinator = getattr(client, "_coordinator", None)
    steps = [
        getattr(coordinator, "_stop_heartbeat_task", None),
        getattr(coordinator, "_stop_commit_offsets_refresh_task", None),
        getattr(getattr(client, "_fetcher", None), "close", None),
        getattr(getattr(client, "_sender", None), "close", None),
        getattr(getattr(client, "_client", None) or getattr(client, "client", None), "close", None),
    ]
    for step in steps:
        if step is not None:
            try:
                await asyncio.wait_for(step(), patience)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and cancelling():
                    raise
                log.debug("%s: forced stop: %s", stream.label, stream.scrub(repr(exc)))
