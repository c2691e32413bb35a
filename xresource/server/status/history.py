"""What the status page remembers: pool and stream figures over the last minutes, and reloads.

Both are bounded: ``window`` samples per resource (taken every ``interval``
seconds, by :meth:`StatusHistory.run` or on demand) and the newest
``timeline_size`` reload events. Nothing is recorded on the registry's hot
paths: samples read ``status()`` like a metrics scrape does, and events come
from the registry's own event callback.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xresource.registry import Registry, ReloadEvent

# The figures charted per family; a stream's counters are charted as per-interval rates.
POOL_FIGURES = ("in_use", "idle", "waiters")
STREAM_COUNTERS = ("received", "dropped", "duplicated")


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    figures: dict[str, float]


class StatusHistory:
    """Samples and the reload timeline of one registry."""

    def __init__(
        self, registry: Registry, *, interval: float = 5.0, window: int = 120, timeline_size: int = 100
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.window = window
        self._samples: dict[str, deque[Sample]] = {}
        self.timeline: deque[ReloadEvent] = deque(maxlen=timeline_size)
        self._unsubscribe: Callable[[], None] | None = registry.on_event(self._on_event)
        self._last_sample = 0.0

    def _on_event(self, event: ReloadEvent) -> None:
        self.timeline.appendleft(event)  # newest first

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def sample(self, now: float | None = None) -> None:
        """Record each resource's current pool and stream figures."""
        now = time.time() if now is None else now
        self._last_sample = now
        names = set()
        for name, status in self.registry.status().items():
            names.add(name)
            figures = figures_of(status.metadata)
            if not figures:
                continue
            self._samples.setdefault(name, deque(maxlen=self.window)).append(Sample(now, figures))
        for gone in set(self._samples) - names:
            del self._samples[gone]

    def sample_if_due(self) -> None:
        if time.time() - self._last_sample >= self.interval:
            self.sample()

    def series(self, name: str, figure: str) -> list[float]:
        """The values of one figure over the window, oldest first (rates for stream counters)."""
        samples = list(self._samples.get(name, ()))
        values = [s.figures.get(figure) for s in samples]
        if figure in STREAM_COUNTERS:
            rates: list[float] = []
            for before, after, value, previous in zip(samples, samples[1:], values[1:], values, strict=False):
                if value is None or previous is None or after.at <= before.at:
                    continue
                rates.append(max(0.0, (value - previous) / (after.at - before.at)))
            return rates
        return [v for v in values if v is not None]

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


def figures_of(metadata: dict[str, Any]) -> dict[str, float]:
    """The numeric pool and stream figures in a resource's metadata."""
    figures: dict[str, float] = {}
    for section in ("pool", "stream"):
        values = metadata.get(section)
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    figures[key] = float(value)
    return figures
