"""The reconnect supervisor of a stream connection, and its backoff schedule.

One supervisor task per runtime runs the backend's ``_listen`` until the
connection is lost, then closes, backs off, opens again and restores every
subscription, until it works or ``max_reconnect_attempts`` attempts failed
(the state is then ``failed``, open iterators raise, and the registry's
recovery calls ``connect()`` again, which keeps the registrations).

Connection states
-----------------
``connection_state`` walks ``connecting -> ready``; a lost connection goes to
``reconnecting`` and, after a successful reconnect with every subscription
restored, back to ``ready``. Between attempts the supervisor sleeps
``reconnect_interval * 2**(attempt-1)`` seconds (capped at 60 s) times a random
jitter factor in [0.5, 1]. After ``max_reconnect_attempts`` failed attempts the
state is ``failed`` (so is the resource's ``state``), open ``messages()``
iterators raise ``XResourceConnectionError``, and the registry's background
recovery calls ``connect()`` again, which keeps handlers and subscriptions.
``disconnect()`` ends in ``closed`` and ends open iterators. ``wait_for_state``
and ``state_history`` make each transition observable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from xresource._transport.backoff import Backoff
from xresource.backends.streams._runtime import StreamRuntime
from xresource.backends.streams._tasks import cancelling
from xresource.backends.streams._transitions import without_label

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource

BACKOFF_CAP = 60.0


class ReconnectGaveUp(Exception):  # a signal between hook and supervisor, never raised to users
    """Raised by ``_listen`` of a self-reconnecting driver when its retry budget is spent."""


def backoff(first: float) -> Backoff:
    """The reconnect schedule: ``first`` seconds, doubling up to 60 s, times a jitter factor in [0.5, 1]."""
    return Backoff(first=first, cap=BACKOFF_CAP, factor=2.0, jitter=0.5)


async def supervise(stream: EventStreamResource, rt: StreamRuntime) -> None:
    """Listen; on a loss, reconnect; end at close, at a hand-over, or when the budget is spent."""
    while not (rt.closing or rt.released):
        try:
            await stream._listen()
            if rt.closing or rt.released:
                return
            raise ConnectionError("the server closed the stream")
        except asyncio.CancelledError:
            if cancelling():
                raise
            stream._note_connection_lost("a driver task was cancelled under the receive loop")
        except ReconnectGaveUp as exc:
            await stream._close_driver("close after giving up")  # stop the driver's own retries
            stream._give_up(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any loss leads to a reconnect
            if rt.closing or rt.released:
                return
            stream._note_connection_lost(exc)
        if not await _reconnect(stream, rt):
            return


async def _reconnect(stream: EventStreamResource, rt: StreamRuntime) -> bool:
    """Close, back off, open and restore until it works or the budget is spent."""
    attempt = 0
    while not (rt.closing or rt.released):
        await stream._close_driver("close before reconnecting")
        attempt += 1
        if attempt > stream.max_reconnect_attempts:
            stream._give_up(
                f"gave up after {attempt - 1} reconnect attempt(s); last error: "
                + without_label(stream, stream.last_error or "connection lost")
            )
            return False
        await asyncio.sleep(stream._backoff(attempt))
        try:
            await stream._open_and_restore()
        except (Exception, asyncio.CancelledError) as exc:  # the next attempt may work
            if isinstance(exc, asyncio.CancelledError) and cancelling():
                raise
            stream._note_attempt_failed(attempt, exc)
            continue
        stream._note_connection_restored(attempt)
        return True
    return False


async def restart(stream: EventStreamResource, rt: StreamRuntime) -> None:
    """Close and open again now (the receive loop is stopped), then supervise as usual."""
    await stream._close_driver("reconnect on purpose")
    try:
        await stream._open_and_restore()
    except Exception as exc:  # noqa: BLE001 - from here the supervisor reconnects as after any loss
        stream._note_connection_lost(exc)
    rt.supervisor = rt.tasks.spawn(supervise(stream, rt), name=f"{stream.name}-supervise")
