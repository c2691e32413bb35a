"""The supervisor: connects, retries, health checks and retirement of the registry's entries.

It owns the registry's :class:`TaskSet`: every background task (retries,
lazy connects, retiring old versions, the health monitor, reloads started by
the watcher or a signal) is spawned there, so ``close()`` cancels and awaits
all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from xresource._transport.backoff import Backoff
from xresource.registry.audit import Audit
from xresource.registry.entry import Entry
from xresource.registry.events import EventHub, ReloadEvent
from xresource.registry.tasks import TaskSet
from xresource.resource import State
from xresource.settings import RegistrySettings

log = logging.getLogger("xresource.registry")


class Supervisor:
    """Keeps entries connected: first connects, background retries with backoff, health checks."""

    def __init__(self, settings: RegistrySettings, hub: EventHub, audit: Audit) -> None:
        self.settings = settings
        self.hub = hub
        self.audit = audit
        self.tasks = TaskSet()
        self.retiring = TaskSet()
        """Retirements of replaced and removed versions: ``close()`` lets them finish (bounded by
        ``drain_timeout``), as code holding a lease on an old version expects."""
        self._monitor: asyncio.Task[None] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        return self.tasks.spawn(coro, name=name)

    async def close(self) -> None:
        """Cancel every background task and wait for all of them; retirements finish first."""
        self._monitor = None
        await self.tasks.close()
        await self.retiring.wait()
        await self.retiring.close()

    def reopen(self) -> None:
        self.tasks.reopen()
        self.retiring.reopen()

    # ---- connecting ---------------------------------------------------------------------------

    async def connect(self, entry: Entry) -> bool:
        """Connect an eager entry now (a lazy one connects on first use): True if it is usable."""
        if entry.resource.connect_mode == "lazy":
            return True
        ok = await entry.connect(self.settings.connect_timeout)
        if ok:
            self.audit.resource("connect", entry)
        return ok

    async def connect_now(self, entry: Entry) -> bool:
        """Connect now, lazy or not (a new version that must take over from a running one)."""
        ok = await entry.connect(self.settings.connect_timeout)
        if ok:
            self.audit.resource("connect", entry)
        return ok

    async def bring_up(self, entry: Entry) -> None:
        """Connect at start or when added; on failure, retry in the background."""
        if not await self.connect(entry):
            log.warning("%s", entry.error)
            self.schedule_retry(entry)

    def schedule_retry(self, entry: Entry) -> None:
        if entry.retry_task is None or entry.retry_task.done():
            entry.retry_task = self.spawn(self._retry(entry), name=f"retry-{entry.resource.name}")

    async def _retry(self, entry: Entry) -> None:
        # The project's one backoff policy, jittered so resources that failed together (a
        # database restart) do not all retry at the same instant.
        backoff = Backoff(first=self.settings.retry_initial, cap=self.settings.retry_max)
        attempt = 0
        while entry.state is State.FAILED and entry.current:
            attempt += 1
            await asyncio.sleep(backoff.delay(attempt))
            if not entry.current:
                return
            if await entry.connect(self.settings.connect_timeout):
                self.hub.emit(ReloadEvent("recovered", entry.resource.name, entry.generation, _path(entry)))
                self.audit.resource("connect", entry)
                return

    # ---- health -------------------------------------------------------------------------------

    def start_health_checks(self, entries: dict[str, Entry]) -> None:
        if self.settings.health_interval > 0 and self._monitor is None:
            self._monitor = self.spawn(self._monitor_health(entries), name="xresource-health")

    async def _monitor_health(self, entries: dict[str, Entry]) -> None:
        """Mark ready resources whose backend stopped answering as failed, and retry them."""
        cfg = self.settings
        while True:
            await asyncio.sleep(cfg.health_interval)
            ready = [e for e in entries.values() if e.state is State.READY]
            results = await asyncio.gather(
                *(asyncio.wait_for(e.resource.validate_connection(), cfg.connect_timeout) for e in ready),
                return_exceptions=True,
            )
            for entry, ok in zip(ready, results, strict=True):
                if ok is True or entry.state is not State.READY or not entry.current:
                    continue
                reason = entry.resource.last_error or (
                    f"{entry.resource.label}: health check failed"
                    + (f" ({type(ok).__name__})" if isinstance(ok, BaseException) else "")
                )
                entry.set_state(State.FAILED, reason)
                self.hub.emit(
                    ReloadEvent("failed", entry.resource.name, entry.generation, _path(entry), (reason,))
                )
                self.schedule_retry(entry)

    # ---- retirement ---------------------------------------------------------------------------

    def retire_later(self, entry: Entry, successor: Entry | None = None) -> None:
        """Drain (open leases finish, then ``close_grace``) and close a replaced or removed version."""
        self.retiring.spawn(
            self.retire(entry, self.settings.drain_timeout, self.settings.close_grace, successor),
            name=f"retire-{entry.resource.name}",
        )

    async def retire(
        self, entry: Entry, timeout: float, grace: float, successor: Entry | None = None
    ) -> None:
        entry.cancel_tasks()
        try:
            await _begin_drain(entry, successor)
            await entry.drain(timeout, grace)
        finally:  # cancelled while draining (stop): still closed
            await entry.close()
            self.audit.resource("disconnect", entry)


async def _begin_drain(entry: Entry, successor: Entry | None) -> None:
    """Let the version give up what it no longer needs (idle connections) to its successor."""
    resource = entry.resource
    try:
        await resource.begin_drain(successor.resource if successor is not None else None)
    except Exception:  # a backend bug must not keep the old version from closing
        log.exception("%s: unexpected error while starting to drain", resource.label)


def _path(entry: Entry) -> str | None:
    path = entry.resource.manifest_path
    return str(path) if path is not None else None
