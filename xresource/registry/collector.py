"""Pausing the cyclic garbage collector while a registry builds what lives on.

Starting on 10,000 manifests builds about a million objects (documents, models,
versions, entries, tasks) that all stay alive. Each time the collector's
thresholds trip it walks every tracked object of the process, the new ones
included, and finds nothing to free: measured, those walks were a third of
start-up. So ``start()`` pauses automatic collection while it reads and
connects (bounded by the read and ``connect_timeout``), and resumes it
afterwards. Reference counting frees everything that is not in a cycle
meanwhile.

What start built is alive, and would otherwise sit in the youngest generation:
the first collection after the pause would walk all of it (0.1-0.4 s on 10,000
manifests) only to promote it. So the pause ends by moving every tracked object
to the oldest generation without a walk (``gc.freeze()`` then ``gc.unfreeze()``,
which is all that pair does); the next full collection walks them once, as it
walks everything, and a cycle that became garbage meanwhile is freed then. An
application that froze objects itself (``gc.freeze()`` before forking workers)
keeps them frozen: then nothing is moved. An application that disabled the
collector keeps it disabled.
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
            if gc.get_freeze_count() == 0:  # unfreeze must not thaw what the application froze
                gc.freeze()
                gc.unfreeze()
            gc.enable()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()
