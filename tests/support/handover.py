"""Replace a stream resource again and again under a steady publish rate; count what was lost.

Used by the stream contract tests and by ``benchmarks/bench_streams.py``: each
replace connects a new instance, calls ``take_over`` (as the registry does)
and disconnects the old one; a handler subscribed before the first replace
counts every ``{"n": i}`` payload it gets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tests.support.stream_feeds import Feed
from tests.support.waiting import eventually
from xresource.backends.streams._base import EventStreamResource


class Collector:
    """A handler that counts every ``{"n": i}`` payload it gets."""

    def __init__(self, unwrap: Callable[[Any], Any] = lambda data: data) -> None:
        self.unwrap = unwrap
        self.counts: Counter[int] = Counter()
        self.order: list[int] = []

    def __call__(self, data: Any) -> None:
        payload = self.unwrap(data)
        if isinstance(payload, dict) and isinstance(payload.get("n"), int):
            self.counts[payload["n"]] += 1
            self.order.append(payload["n"])

    def has(self, *numbers: int) -> bool:
        return all(self.counts[n] for n in numbers)

    def duplicates(self) -> int:
        return sum(count - 1 for count in self.counts.values() if count > 1)


@dataclass
class ReplaceFigures:
    replaces: int
    sent: int
    lost: int
    delivered_twice: int
    duplicates_caught: int
    """Received by both instances in an overlap and handed to the handler once (``counters.duplicates``)."""
    seconds: float
    in_order: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


async def replace_under_load(
    make: Callable[[], EventStreamResource],
    subscribe: Callable[[EventStreamResource, Collector], Awaitable[None]],
    feed: Feed,
    channel: str,
    *,
    replaces: int,
    rate: float,
    collector: Collector | None = None,
    expect_all: bool = True,
) -> ReplaceFigures:
    """Publish ``{"n": i}`` at ``rate`` per second while replacing the resource ``replaces`` times."""
    got = collector or Collector()
    stop = asyncio.Event()

    async def publish() -> int:
        n = 0
        while not stop.is_set():
            await feed.emit(channel, {"n": n})
            n += 1
            await asyncio.sleep(1 / rate)  # the publish rate, not a wait for a condition
        return n

    current = make()
    duplicates = 0
    started = time.perf_counter()
    try:
        await current.connect()
        await subscribe(current, got)
        publisher = asyncio.create_task(publish())
        try:
            for _ in range(replaces):
                count = len(got.counts)
                await eventually(lambda count=count: len(got.counts) >= count + 3, timeout=30)
                new = make()
                await new.connect()
                await new.take_over(current)
                await current.disconnect()
                duplicates += current.counters.duplicates
                current = new
        finally:
            stop.set()
            sent = await publisher
        if expect_all:
            await eventually(lambda: len(got.counts) >= sent, timeout=30, what=f"all {sent} received")
        else:
            await eventually(lambda: got.has(sent - 1), timeout=30, what="the last one received")
        duplicates += current.counters.duplicates
    finally:
        await current.disconnect()
    return ReplaceFigures(
        replaces=replaces,
        sent=sent,
        lost=sent - len(got.counts),
        delivered_twice=got.duplicates(),
        duplicates_caught=duplicates,
        seconds=time.perf_counter() - started,
        in_order=got.order == sorted(got.order),
    )
