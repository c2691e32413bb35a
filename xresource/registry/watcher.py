"""Folder watching that wakes the registry up to rescan.

Measured with watchfiles: watching a folder sees a Kubernetes ConfigMap swap
(the ``..data`` symlink replaced by rename) within ~50-90 ms but reports only
``..data`` paths; watching a linked file directly goes silent after the first
swap; mtime polling misses a swap within the same second. So we watch
folders, treat any event as "rescan", and let the registry compare content
hashes. The watch call's timeout doubles as the periodic safety-net rescan.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("xresource.registry")


class FolderWatcher:
    """Calls ``on_change()`` after file events (debounced) and every ``rescan_interval`` seconds."""

    def __init__(
        self,
        folders: Iterable[Path],
        on_change: Callable[[str], Awaitable[None]],
        *,
        debounce_ms: int,
        step_ms: int,
        rescan_interval: float,
    ) -> None:
        self.folders = sorted({f.resolve() for f in folders if f.exists()})
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._timeout_ms = int(rescan_interval * 1000) if rescan_interval > 0 else 0
        self._stop = threading.Event()
        self._notify: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Arm the OS watch now (so an edit right after ``start`` is seen), then loop in a task."""
        from watchfiles._rust_notify import RustNotify  # the watcher behind watchfiles.awatch

        self._notify = RustNotify([str(f) for f in self.folders], False, False, 300, True, True)
        self._task = asyncio.create_task(self._loop(), name="xresource-watcher")

    async def _loop(self) -> None:
        notify = self._notify
        while not self._stop.is_set():
            result = await asyncio.to_thread(
                notify.watch, self._debounce_ms, self._step_ms, self._timeout_ms, self._stop
            )
            if result == "stop" or self._stop.is_set():
                return
            reason = "rescan" if result == "timeout" else "file change"
            try:
                await self._on_change(reason)
            except Exception:
                log.exception("reload after %s failed", reason)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._step_ms / 1000 + 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None
