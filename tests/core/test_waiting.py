"""The tests' waiting helper fails when it should (a helper that cannot fail proves nothing)."""

from __future__ import annotations

import pytest

from tests.support.waiting import eventually, eventually_sync, stays


async def test_eventually_returns_the_first_truthy_value_of_sync_and_async_predicates() -> None:
    calls = []

    def sync() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await eventually(sync) == 3

    async def async_predicate() -> str:
        return "ready"

    assert await eventually(async_predicate) == "ready"


async def test_eventually_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"not true within 0\.05s: the door opens"):
        await eventually(lambda: False, timeout=0.05, what="the door opens")


async def test_stays_fails_as_soon_as_the_condition_breaks() -> None:
    state = {"polls": 0}

    def holds() -> bool:
        state["polls"] += 1
        return state["polls"] < 3

    with pytest.raises(AssertionError, match="stopped holding: still closed"):
        await stays(holds, duration=5, what="still closed")
    await stays(lambda: True, duration=0.03)


def test_eventually_sync_returns_the_first_truthy_value_or_fails_naming_it() -> None:
    calls: list[int] = []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert eventually_sync(third_time, interval=0.001) == 3
    with pytest.raises(AssertionError, match=r"not true within 0\.05s: the lights go on"):
        eventually_sync(lambda: None, timeout=0.05, what="the lights go on")
