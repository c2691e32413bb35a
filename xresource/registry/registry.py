"""``Registry``: named, connected resources from a folder of manifests, reloaded live.

Rules (docs/hot-reload.md):

- ``start()`` validates everything first (``ManifestError`` with every problem,
  nothing connects), then connects every eager resource concurrently, each
  within ``connect_timeout``. A resource that cannot connect is ``failed`` and
  retried in the background with backoff.
- ``reload()`` reads the folder again (:mod:`reader`), decides by name what
  changed (:mod:`diff`, shared with ``xresource plan``) and carries it out
  (:mod:`apply`): connect first, swap atomically, retire the old version.
  A file with any problem changes nothing that runs.
- ``get()`` is a dict lookup in C, no I/O and no Python frame.

This module is the facade; the supervisor (:mod:`supervisor`) owns every
background task, and ``stop()`` cancels and awaits all of them. The manifests come from a
source (:mod:`sources`): a folder, a base folder with overlays (docs/environments.md), or
manifests given in code (docs/testing.md); tests put fakes in place with :mod:`overrides`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from xresource.errors import (
    ManifestError,
    Problem,
    XResourceConnectionError,
    XResourceNotFoundError,
    XResourceStateError,
)
from xresource.registry.apply import Applier
from xresource.registry.audit import Audit
from xresource.registry.collector import CollectorPause
from xresource.registry.diff import Desired, diff
from xresource.registry.entry import Entry, ReadyMap
from xresource.registry.events import EventHub, EventStream, ReloadEvent, ReloadResult
from xresource.registry.overrides import ForTests, Overrides
from xresource.registry.reader import Snapshot
from xresource.registry.scope import narrow
from xresource.registry.selection import select
from xresource.registry.sources import FolderSource, ManifestSource
from xresource.registry.status import ResourceStatus, overridden_status, status_of
from xresource.registry.supervisor import Supervisor
from xresource.registry.triggers import ReloadTriggers
from xresource.registry.watcher import FolderWatcher
from xresource.resource import State, XResource
from xresource.settings import Settings, load_settings

log = logging.getLogger("xresource.registry")

_READY = State.READY
_SETTLE_WAIT_FACTOR = 10
"""A reload waits for files being written up to this many settle windows (at least a second)."""


class Registry(ReloadTriggers, ForTests):
    """A live registry of the resources defined under ``path``.

    ``path`` is a folder, or an ordered list of folders: the first is the base, each later
    one an overlay that changes it field by field (docs/environments.md).
    """

    get: Callable[[str], Any]
    """The ready resource called ``name`` (synchronous: one dict lookup, no I/O).

    Raises ``XResourceNotFoundError`` (a ``KeyError``) for an unknown name,
    ``XResourceConnectionError`` (with the cause) for a resource that is not
    ready, and ``XResourceStateError`` for a lazy one not connected yet or a
    registry that is not running. It returns ``Any`` because the name is data:
    ``xresource stubs`` writes a module that types each name with its class.

    Each instance binds it to its ready map's own ``__getitem__`` (see
    ``__init__``): a lookup in C with no Python frame.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        watch: bool = False,
        settings: Settings | None = None,
    ) -> None:
        settings = settings if settings is not None else load_settings()
        folders = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
        if not folders:
            raise ValueError("Registry() needs at least one folder")
        self._setup(FolderSource(folders, settings), folders[0], watch, settings)

    def _setup(self, source: ManifestSource, path: Path, watch: bool, settings: Settings) -> None:
        self.path = path
        """The (base) folder; for manifests given in code, the folder relative paths resolve against."""
        self.watch = watch
        self.settings = settings
        self._source = source
        self._entries: dict[str, Entry] = {}
        # What get() returns: the ready, current instance of each name. A miss falls back to
        # _get_slow, which explains why (unknown, failed, lazy, connecting, stopped).
        self._ready = ReadyMap(self._get_slow)
        # get() is this map's own __getitem__: a lookup in C with no Python frame, which is
        # what keeps it within a small factor of a plain dict lookup.
        self.get = self._ready.__getitem__
        self._hub = EventHub()
        self._audit = Audit(self.settings.registry.audit_log)
        self._supervisor = Supervisor(self.settings.registry, self._hub, self._audit)
        self._applier = Applier(self._entries, self._ready, self._hub, self._supervisor, self._audit)
        self._overrides = Overrides(self._ready, self._entries, self._declared_names)
        self._reload_lock = asyncio.Lock()
        self._watcher: FolderWatcher | None = None
        self._followup: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self.reload_counts: dict[str, int] = {
            "applied": 0,
            "unchanged": 0,
            "rejected": 0,
            "partial": 0,
            "failed": 0,
        }
        self.last_reload_at: float | None = None
        self.last_reload_seconds: float | None = None
        self.rescans = 0
        """Safety-net rescans done; one that changes nothing is not counted as a reload."""
        self.last_reload_error: str | None = None
        """Why the last reload failed as a whole (``None`` after one that did not)."""

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Validate every manifest, then connect every eager resource concurrently."""
        if self._started:
            return
        pause = CollectorPause().begin()  # what start builds lives on: do not walk it again and again
        try:
            # Reloads (from the watcher) wait until the first connect round is over.
            async with self._reload_lock:
                if self._started:  # a concurrent start() got here first
                    pause.end()
                    return
                snapshot = await asyncio.to_thread(self._source.read, settle=False)
                if missing := self._source.missing():
                    raise ManifestError(missing)
                snapshot.loaded.raise_for_problems()
                self._supervisor.reopen()
                self._hub.reopen()
                self._started, self._stopped = True, False
                versions = snapshot.desired.versions
                for name, resource in snapshot.loaded.resources.items():
                    entry = self._applier.new_entry(resource, 1, versions[name])
                    self._entries[name] = entry
                    entry.make_current(self._ready)
                if self.watch:
                    # Armed before connecting, which can take connect_timeout: an edit made
                    # meanwhile is seen, and applied right after this round.
                    self._start_watcher(self._watch_folders(snapshot, ()))
                entries = list(self._entries.values())
                await asyncio.gather(*(self._supervisor.bring_up(e) for e in entries))
        except BaseException:
            pause.end()
            await self.stop()  # cancelled half way: leave nothing connected or watching
            raise
        pause.end()
        self._supervisor.start_health_checks(self._entries)
        log.info("registry started: %d resources from %s", len(entries), self._source.label)

    async def stop(self) -> None:
        """Stop watching, drain leases (bounded) and close every resource; await every task."""
        if not self._started:
            return
        self._started, self._stopped = False, True
        # A reload in flight finishes first (bounded by connect_timeout); what it connected
        # is then closed with the rest instead of being added after the registry stopped.
        async with self._reload_lock:
            if self._watcher is not None:
                await self._watcher.stop()
                self._watcher = None
            entries = list(self._entries.values())
            self._entries.clear()
            for entry in entries:
                entry.retire()
            timeout = self.settings.registry.drain_timeout
            await asyncio.gather(*(self._supervisor.retire(e, timeout, grace=0.0) for e in entries))
        self._followup = None
        await self._supervisor.close()
        await self._hub.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- access ---------------------------------------------------------------------------

    def _get_slow(self, name: str) -> XResource:
        entry = self._entries.get(name)
        if entry is None:
            if self._stopped:
                raise self._stopped_error()
            raise XResourceNotFoundError(name, list(self._entries))
        if entry.state is _READY:  # pragma: no cover - the ready map is kept in step
            return entry.resource
        raise entry.not_ready_error()

    def _stopped_error(self) -> XResourceStateError:
        return XResourceStateError(f"the registry of {self._source.label} is stopped; it serves no resource")

    async def aget(self, name: str) -> Any:
        """Like ``get`` but connects a lazy resource first."""
        overridden, fake = self._ready.override_of(name)
        return fake if overridden else (await self._current_ready(name)).resource

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Any]:
        """Pin the current instance of ``name`` for a unit of work; reloads wait for it."""
        overridden, fake = self._ready.override_of(name)
        if overridden:
            yield fake
            return
        entry = await self._current_ready(name)
        entry.acquire()  # no await since the check: this is the current, ready version
        self._audit.resource("lease_open", entry)
        try:
            yield entry.resource
        finally:
            entry.release()
            self._audit.resource("lease_close", entry)

    @asynccontextmanager
    async def transaction(self, name: str, **options: Any) -> AsyncIterator[Any]:
        """``lease(name)`` and its ``transaction(**options)`` in one ``async with``: yields what the
        resource's ``transaction()`` yields (docs/api.md); ``TypeError`` for a type without them."""
        async with self.lease(name) as resource:
            begin = getattr(resource, "transaction", None)  # databases have it; files, streams do not
            if not callable(begin):
                raise TypeError(
                    f"{name!r} ({type(resource).__name__}) has no transactions (postgresql, mysql and mongodb do)"
                )
            async with begin(**options) as connection:
                yield connection

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def select(
        self, *, tag: str | None = None, folder: str | os.PathLike[str] | None = None, type: str | None = None
    ) -> dict[str, Any]:
        """Ready resources matching every given filter (a tag, a sub-folder, a type)."""
        return select(
            self._entries, self.path, self._ready.override_of, tag=tag, folder=folder, type_name=type
        )

    def status(self) -> dict[str, ResourceStatus]:
        """A snapshot per resource: state, last error, manifest path, generation, what is pending."""
        statuses = {}
        for name, entry in sorted(self._entries.items()):
            overridden, fake = self._ready.override_of(name)
            statuses[name] = overridden_status(entry, fake) if overridden else status_of(entry)
        return statuses

    @property
    def pending(self) -> dict[str, str]:
        """name -> why the files' version of it is not running (the ``pending`` of ``status()``)."""
        return {n: e.pending for n, e in sorted(self._entries.items()) if e.pending is not None}

    def events(self) -> EventStream:
        """Async iterator over reload events from this call on (``aclose()`` ends it)."""
        return self._hub.stream()

    def on_event(self, callback: Callable[[ReloadEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every reload event; returns a function that unsubscribes."""
        return self._hub.add_callback(callback)

    @property
    def ready(self) -> bool:
        return all(
            e.state is _READY
            or (e.resource.connect_mode == "lazy" and e.state is State.NEW)
            or self._ready.override_of(name)[0]
            for name, e in self._entries.items()
        )

    # ---- reload ---------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Read the folder again and apply what changed; see docs/hot-reload.md for the rules.

        Files being written are waited for (up to a few settle windows). A failure that is
        not one file's problem is recorded (``last_reload_error``, every resource ``pending``)
        and raised.
        """
        return await self._reload("reload")

    async def _reload(self, reason: str, paths: frozenset[str] | None = None) -> ReloadResult:
        """``paths``: what the watcher reported (only those are read again); ``None``: every file."""
        async with self._reload_lock:
            if not self._started:
                raise XResourceStateError(f"the registry of {self._source.label} is not started")
            started = time.perf_counter()
            try:
                snapshot = await self._read_settled(paths)
                desired = self._desired(snapshot)
                scope = narrow(self._entries, desired)  # names that cannot change are not diffed
                outcome = await self._applier.apply(
                    diff(scope.running, scope.desired), snapshot.loaded.resources, desired.versions
                )
                if scope.untouched:
                    outcome.unchanged = sorted([*outcome.unchanged, *scope.untouched])
            except Exception as exc:
                self._reload_failed(exc)
                raise
            self.last_reload_error = None
            self.rescans += reason == "rescan"
            if reason != "rescan" or outcome.changed:
                # The safety-net rescan counts only when it found something to do.
                self.last_reload_at = time.time()
                self.last_reload_seconds = time.perf_counter() - started
                self.reload_counts[outcome.outcome] = self.reload_counts.get(outcome.outcome, 0) + 1
            if self.watch and self._watcher is not None:
                self._rewatch_if_needed(self._watch_folders(snapshot, scope.running.values()))
            if snapshot.settles_in:
                self._reload_once_settled(snapshot.settles_in)
            return outcome

    async def _read_settled(self, paths: frozenset[str] | None) -> Snapshot:
        """Read the folder; while files are still being written, wait for them (bounded)."""
        window = self.settings.registry.settle_ms / 1000
        deadline = time.monotonic() + max(1.0, _SETTLE_WAIT_FACTOR * window)
        while True:
            snapshot = await asyncio.to_thread(self._source.read, settle=True, changed=paths)
            if not snapshot.settles_in or time.monotonic() + snapshot.settles_in > deadline:
                return snapshot
            await asyncio.sleep(snapshot.settles_in + 0.001)
            paths = frozenset()  # the reader looks again at the files it held back

    def _desired(self, snapshot: Snapshot) -> Desired:
        missing = self._source.missing()
        if not missing:
            return snapshot.desired
        # A vanished folder (an unmounted volume) must not remove everything that runs.
        for name, entry in self._entries.items():
            if entry.version.path is not None:
                missing.append(Problem(entry.version.path, None, None, "manifest folder is missing", name))
        return Desired(versions={}, problems=missing)

    def _reload_failed(self, exc: Exception) -> None:
        reason = f"reload failed: {type(exc).__name__}: {exc}"
        log.error("%s", reason, exc_info=exc)
        self.last_reload_error = reason
        self.reload_counts["failed"] += 1
        for entry in self._entries.values():
            entry.set_pending(reason)

    def _reload_once_settled(self, delay: float) -> None:
        """Some file was still being written after the wait: look again once it may have settled."""
        if self._followup is not None and not self._followup.done():
            return

        async def later() -> None:
            await asyncio.sleep(delay + 0.001)
            if self._started:
                await self._reload("settled", frozenset())  # the files held back

        self._followup = self._supervisor.spawn(later(), name="xresource-settled-reload")

    async def wait_closed(self) -> None:
        """Wait until every replaced or removed instance has been drained and closed."""
        await self._supervisor.retiring.wait()

    # ---- internals ------------------------------------------------------------------------

    def _entry(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is None:
            if self._stopped:
                raise self._stopped_error()
            raise XResourceNotFoundError(name, list(self._entries))
        return entry

    async def _current_ready(self, name: str) -> Entry:
        """The current version of ``name``, connected (a lazy one connects now).

        A reload may replace or remove the version being connected; then the callers
        waiting for it move on to the version that runs now instead of failing.
        """
        while True:
            entry = self._entry(name)
            if entry.state is _READY:
                return entry
            try:
                await entry.ensure_lazy_connected(self.settings.registry.connect_timeout)
            except asyncio.CancelledError:
                # The connect we waited on was cancelled by its retirement, unless we are.
                task = asyncio.current_task()
                if entry.current or (task is not None and task.cancelling()):
                    raise
                continue
            except XResourceConnectionError:
                if entry.current:
                    raise
                continue
            if not entry.current:
                continue
            if entry.state is not _READY:
                raise entry.not_ready_error()
            return entry
