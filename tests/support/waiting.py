"""The one way tests wait: poll a condition until it holds, or assert it keeps holding.

No test sleeps for "long enough" and then asserts: it waits for the condition it
needs with :func:`eventually` (which fails with a message after ``timeout``), or
checks that nothing happens with :func:`stays`. Time bounds in assertions add
:data:`SLACK`, because the machines running the suite are shared and busy.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

SLACK = 1.5
"""Seconds added to any upper time bound a test asserts (shared, busy machines)."""


async def _value(predicate: Callable[[], T | Awaitable[T]]) -> T:
    value = predicate()
    if inspect.isawaitable(value):
        return await value
    return value


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "",
) -> T:
    """Poll ``predicate`` (sync or async) until it returns something truthy, and return that.

    Fails the test with an ``AssertionError`` naming ``what`` (or the predicate) after
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await _value(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            described = what or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"not true within {timeout}s: {described} (last value: {value!r})")
        await asyncio.sleep(interval)


async def stays(
    predicate: Callable[[], object | Awaitable[object]],
    *,
    duration: float,
    interval: float = 0.01,
    what: str = "",
) -> None:
    """Assert ``predicate`` holds at every poll for ``duration`` seconds ("nothing happens")."""
    deadline = time.monotonic() + duration
    while True:
        assert await _value(predicate), f"stopped holding: {what or predicate}"
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
) -> T:
    """:func:`eventually` for synchronous tests (a browser driven by Playwright's sync API,
    a child process): polls ``predicate`` with ``time.sleep`` between tries."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"not true within {timeout}s: {described} (last value: {value!r})")
        time.sleep(interval)
