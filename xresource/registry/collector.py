"""Pausing the cyclic garbage collector while a registry builds what lives on.

Starting on 10,000 manifests builds about a million objects (documents, models,
versions, entries, tasks) that all stay alive. Each time the collector's
thresholds trip it walks every tracked object of the process, the new ones
included, and finds nothing to free: measured, those walks were a third of
start-up. So ``start()`` pauses automatic collection while it reads and
connects (bounded by the read and ``connect_timeout``) and resumes it
afterwards; the next automatic collection then walks the heap once. Reference
counting frees everything that is not in a cycle meanwhile. An application
that disabled the collector itself keeps it disabled; nothing here calls
``gc.freeze``.
"""

from __future__ import annotations

import gc
from types import TracebackType


class CollectorPause:
    """``with CollectorPause():`` no automatic garbage collection inside (unless it was off already)."""

    __slots__ = ("_owned",)

    def __init__(self) -> None:
        self._owned = False

    def __enter__(self) -> CollectorPause:
        return self.begin()

    def begin(self) -> CollectorPause:
        """Pause automatic collection now, unless it is off already; ``end()`` resumes it."""
        if not self._owned and gc.isenabled():
            gc.disable()
            self._owned = True
        return self

    def end(self) -> None:
        """Resume collection (if this pause stopped it); safe to call twice."""
        if self._owned:
            self._owned = False
            gc.enable()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()
