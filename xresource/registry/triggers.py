"""What makes a registry reload: its folder watcher (after an optional jitter) and SIGHUP.

A mixin of ``Registry``; every trigger ends in ``Registry._reload``, which holds
the reload lock, so triggers never run two reloads at once (docs/hot-reload.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from xresource.errors import XResourceStateError
from xresource.registry.watcher import FolderWatcher, watch_folders

if TYPE_CHECKING:
    from xresource.registry.diff import Version
    from xresource.registry.events import ReloadResult
    from xresource.registry.reader import Snapshot
    from xresource.registry.sources import ManifestSource
    from xresource.registry.supervisor import Supervisor
    from xresource.settings import Settings

log = logging.getLogger("xresource.registry")


class ReloadTriggers:
    """``Registry``'s watcher and signal handling."""

    path: Path
    settings: Settings
    _source: ManifestSource
    _supervisor: Supervisor
    _watcher: FolderWatcher | None
    _started: bool

    async def _reload(self, reason: str, paths: frozenset[str] | None = None) -> ReloadResult:
        raise NotImplementedError

    def _watch_folders(self, snapshot: Snapshot, running: Iterable[Version]) -> list[Path]:
        return watch_folders(self.path, snapshot.secret_files, running, self._source.watch_roots())

    def _start_watcher(self, folders: list[Path]) -> None:
        cfg = self.settings.registry
        self._watcher = FolderWatcher(
            folders,
            self._on_watch_event,
            debounce_ms=cfg.watch_debounce_ms,
            step_ms=cfg.watch_step_ms,
            rescan_interval=cfg.rescan_interval,
            tasks=self._supervisor.tasks,
        )
        self._watcher.start()

    def _rewatch_if_needed(self, folders: list[Path]) -> None:
        assert self._watcher is not None
        if folders != self._watcher.folders:
            old = self._watcher
            self._start_watcher(folders)
            self._supervisor.spawn(old.stop(), name="xresource-watcher-stop")

    async def _on_watch_event(self, reason: str, paths: frozenset[str] | None) -> None:
        jitter = self.settings.registry.reload_jitter
        if jitter > 0 and self._started:
            # Replicas that watch the same files would all reload at the same instant (and
            # reconnect to the same servers): each waits its own random share of the jitter.
            # This runs on the watcher's task, which stop() cancels; reload() never waits here.
            await asyncio.sleep(random.uniform(0, jitter))  # noqa: S311 - spreading, not secrecy
        if self._started:
            try:
                # An event says which files changed; the safety-net rescan reads every file.
                result = await self._reload(reason, paths)
            except XResourceStateError:
                return  # stopped while this event waited for the reload lock
            if result.changed or result.problems:
                log.info("reload after %s: %s", reason, result.outcome)

    def install_signal_handlers(self) -> None:
        """Reload on SIGHUP (for ``xresource serve`` and services that want it)."""
        loop = asyncio.get_running_loop()

        def on_sighup() -> None:
            if self._started:
                self._supervisor.spawn(self._reload_on_signal(), name="xresource-sighup")

        loop.add_signal_handler(signal.SIGHUP, on_sighup)

    async def _reload_on_signal(self) -> None:
        try:
            result = await self._reload("SIGHUP")
        except XResourceStateError:
            return  # stopped meanwhile
        except Exception:  # noqa: BLE001 - recorded and logged by _reload
            return
        log.info("reload after SIGHUP: %s", result.outcome)
