"""The one retry delay policy: exponential, capped, with jitter.

Attempt ``n`` (from 1) waits ``first * factor ** (n - 1)`` seconds, at most
``cap``, times a random factor in ``[1 - jitter, 1]`` so that many clients
that failed together do not retry together. ``jitter=0`` gives the plain
doubling schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64  # beyond this every schedule is at its cap; keeps float powers finite


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts: ``Backoff(first=0.5, cap=30).delay(3)`` is 1 to 2 seconds."""

    first: float
    """Delay before the first retry (seconds, before jitter)."""
    cap: float
    """Longest delay (seconds, before jitter)."""
    factor: float = 2.0
    """Growth per attempt."""
    jitter: float = 0.5
    """Fraction of the delay that is random (0: none; 0.5: between half and all of it)."""

    def __post_init__(self) -> None:
        if self.first < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self!r}")

    def ceiling(self, attempt: int) -> float:
        """The delay before attempt ``attempt`` (from 1) without jitter: its upper bound."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        return float(min(self.cap, self.first * self.factor**exponent))

    def delay(self, attempt: int) -> float:
        """The delay before attempt ``attempt`` (from 1), jittered."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        return ceiling * random.uniform(1.0 - self.jitter, 1.0)  # noqa: S311 - jitter, not crypto

    def budget(self, attempts: int) -> float:
        """The longest time ``attempts`` delays can take in all (for drivers that retry on their own)."""
        if self.factor == 1:
            return self.ceiling(1) * max(attempts, 0)
        total = 0.0
        for n in range(1, attempts + 1):
            ceiling = self.ceiling(n)
            if ceiling >= self.cap:  # every later delay is the cap too
                return total + self.cap * (attempts - n + 1)
            total += ceiling
        return total
