"""Connection state transitions of a stream instance, with their log lines and error texts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from xresource.errors import XResourceConnectionError, XResourceError
from xresource.resource import State

if TYPE_CHECKING:
    from xresource.backends.streams._base import EventStreamResource

log = logging.getLogger("xresource.streams")


def lost(stream: EventStreamResource, exc: BaseException | str) -> None:
    if isinstance(exc, XResourceError):
        stream._last_error = str(exc)
    elif isinstance(exc, BaseException):
        stream._last_error = stream.translate(exc, "receive").args[0]
    else:
        stream._last_error = f"{stream.label}: {stream.scrub(exc)}"
    log.warning("%s lost its connection: %s", stream.label, stream._last_error)
    if stream._rt is not None:
        stream._rt.epoch += 1
    stream._status.enter(State.RECONNECTING)


def restored(stream: EventStreamResource, attempts: int | None) -> None:
    stream._counters.reconnects += 1
    stream._last_error = None
    if stream._rt is not None:
        stream._rt.epoch += 1
    stream._status.enter(State.READY)
    after = f" after {attempts} attempt(s)" if attempts else ""
    log.info("%s reconnected%s", stream.label, after)


def without_label(stream: EventStreamResource, text: str) -> str:
    """``"kafka resource 'k' at h:p: receive failed: x"`` -> ``"receive failed: x"``."""
    where = f" at {stream.target()}" if stream.target() else ""
    return text.removeprefix(f"{stream.label}{where}: ").removeprefix(f"{stream.label}: ")


def give_up(stream: EventStreamResource, reason: str) -> None:
    stream._last_error = f"{stream.label}: {stream.scrub(reason)}"
    stream._status.enter(State.FAILED)
    stream._state = State.FAILED
    log.error("%s", stream._last_error)
    # An iterator must not end quietly when the stream failed: it raises (a
    # reload that replaces the resource never gets here: iterators move on).
    stream._counters.dropped += stream._regs.end_iterators(XResourceConnectionError(stream._last_error))
