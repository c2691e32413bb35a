"""The one way tests wait for a condition: ``await wait_until(predicate, timeout=..., message=...)``.

The predicate may be a plain function or return an awaitable (an ``async def``
or a lambda around a coroutine call); it is polled until it returns something
truthy, which ``wait_until`` returns. After ``timeout`` seconds the test fails
with ``message`` (and the predicate's last value), never silently.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL = 0.005


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    message: str = "",
    interval: float = POLL_INTERVAL,
) -> T:
    """Poll ``predicate`` until it is truthy and return its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"not true within {timeout}s: {what} (last value: {value!r})")
        await asyncio.sleep(interval)
