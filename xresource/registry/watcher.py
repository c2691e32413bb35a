"""Folder watching that wakes the registry up to rescan.

Measured with watchfiles: watching a folder sees a Kubernetes ConfigMap swap
(the ``..data`` symlink replaced by rename) within ~50-90 ms but reports only
``..data`` paths; watching a linked file directly goes silent after the first
swap; mtime polling misses a swap within the same second. So we watch
folders and hand the paths each batch names to the registry, whose reader
reads those files again (or every file, when a path cannot be pinned to
files: a ``..data`` swap) and compares content hashes. The watch call's
timeout doubles as the periodic safety-net rescan, which reads every file.

The blocking watch runs on a thread of its own, never on the event loop's
default executor: an application's ``asyncio.to_thread`` must not wait
because registries are watching. The thread only hands what it saw to the
loop; the reload itself runs as a task the registry owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from xresource.registry.diff import Version
from xresource.registry.tasks import TaskSet

log = logging.getLogger("xresource.registry")

WatchCallback = Callable[[str, frozenset[str] | None], Awaitable[None]]
"""``on_change(reason, paths)``: reason is ``"file change"`` or ``"rescan"``; ``paths`` what the watcher
reported, ``None`` when every file must be read (a periodic rescan)."""

_JOIN_SECONDS = 5.0


class FolderWatcher:
    """Calls ``on_change`` after file events (debounced) and every ``rescan_interval`` seconds."""

    def __init__(
        self,
        folders: Iterable[Path],
        on_change: WatchCallback,
        *,
        debounce_ms: int,
        step_ms: int,
        rescan_interval: float,
        tasks: TaskSet,
    ) -> None:
        self.folders = sorted({f.resolve() for f in folders if f.exists()})
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._timeout_ms = int(rescan_interval * 1000) if rescan_interval > 0 else 0
        self._tasks = tasks
        self._stop = threading.Event()
        self._notify: Any = None
        self._thread: threading.Thread | None = None
        self._exited: asyncio.Future[None] | None = None
        self._queue: asyncio.Queue[tuple[str, frozenset[str], float]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self.last_event_at: float | None = None
        """``time.perf_counter()`` when the OS watch returned the batch being handled now (or last)."""

    def start(self) -> None:
        """Arm the OS watch now (so an edit right after ``start`` is seen), then watch on a thread."""
        from watchfiles._rust_notify import RustNotify  # the watcher behind watchfiles.awatch

        loop = asyncio.get_running_loop()
        self._notify = RustNotify([str(f) for f in self.folders], False, False, 300, True, True)
        self._exited = loop.create_future()
        self._consumer = self._tasks.spawn(self._consume(), name="xresource-watcher")
        self._thread = threading.Thread(
            target=self._watch, args=(loop, self._notify, self._exited), name="xresource-watcher", daemon=True
        )
        self._thread.start()

    def _watch(self, loop: asyncio.AbstractEventLoop, notify: Any, exited: asyncio.Future[None]) -> None:
        """The watcher thread: block in the OS watch, hand each result to the loop."""
        try:
            while not self._stop.is_set():
                result = notify.watch(self._debounce_ms, self._step_ms, self._timeout_ms, self._stop)
                if result == "stop" or self._stop.is_set():
                    return
                at = time.perf_counter()
                if result == "timeout":
                    item = ("rescan", frozenset[str](), at)
                else:
                    item = ("file change", frozenset(str(path) for _, path in result), at)
                loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            return  # the loop closed under us: nobody is left to tell
        except Exception:
            log.exception("the file watcher stopped")
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_done, exited)

    async def _consume(self) -> None:
        while True:
            reason, paths, at = await self._queue.get()
            full = reason == "rescan"
            # Events that queued up during the last reload are one more reload, not many.
            while not self._queue.empty():
                more_reason, more_paths, at = self._queue.get_nowait()
                paths |= more_paths
                if more_reason == "rescan":
                    full = True
                else:
                    reason = more_reason
            self.last_event_at = at
            try:
                # A rescan reads every file (it is there for events the watcher missed).
                await self._on_change(reason, None if full else paths)
            except Exception:
                log.exception("reload after %s failed", reason)

    async def stop(self) -> None:
        """Stop the thread (it notices within ``step_ms``) and the task it feeds; wait for both."""
        self._stop.set()
        if self._exited is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), _JOIN_SECONDS)
            except TimeoutError:
                log.warning("the file watcher thread did not stop within %gs", _JOIN_SECONDS)
            self._exited = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            if consumer is not asyncio.current_task():
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None


def watch_folders(
    root: Path, secret_files: Iterable[str], running: Iterable[Version] = (), roots: Iterable[Path] = ()
) -> list[Path]:
    """The folders to watch, resolved and sorted: the manifests' folder (and ``roots``, overlay
    folders), and the folders of the secret files read now and of those still running."""
    targets = set(secret_files)
    for version in running:
        targets.update(ref[len("${file:") : -1] for ref in version.secrets or ())
    folders = {root if root.is_dir() else root.parent, *roots}
    folders.update(Path(target).parent for target in targets)
    return sorted({f.resolve() for f in folders if f.exists()})


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
