"""``Registry``: named, connected resources from a folder of manifests, reloaded live.

Rules (DESIGN.md section 4):

- ``start()`` validates everything first (``ManifestError`` with every problem,
  nothing connects), then connects every eager resource concurrently, each
  within ``connect_timeout``. A resource that cannot connect is ``failed`` and
  retried in the background with backoff.
- ``reload()`` diffs by name: unchanged resources keep their instance; a changed
  one is connected first and swapped in atomically, and the old one is drained
  (open leases finish, bounded by ``drain_timeout``) and closed; a removed one
  is drained and closed. A file with any problem changes nothing that runs:
  the resources it defined keep serving, with the problem as their ``error``.
- ``get()`` is a dict lookup and a state check, no I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
from xresource.manifests import LoadResult, load_manifests
from xresource.manifests.loader import ParseCache
from xresource.registry.entry import Entry
from xresource.registry.events import EventHub, EventStream, ReloadEvent, ReloadResult
from xresource.registry.status import ResourceStatus
from xresource.registry.watcher import FolderWatcher
from xresource.resource import State, XResource
from xresource.settings import Settings, load_settings

log = logging.getLogger("xresource.registry")
audit_log = logging.getLogger("xresource.audit")

_READY = State.READY


class Registry:
    """A live registry of the resources defined under ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        watch: bool = False,
        settings: Settings | None = None,
    ) -> None:
        self.path = Path(path)
        self.watch = watch
        self.settings = settings if settings is not None else load_settings()
        self._entries: dict[str, Entry] = {}
        # What get() returns: the ready, current instance of each name. A miss falls back to
        # _get_slow, which explains why (unknown, failed, lazy, connecting).
        self._ready = _ReadyMap(self._get_slow)
        # get() is this map's own __getitem__: a lookup in C with no Python frame, which is
        # what keeps it within a small factor of a plain dict lookup.
        self.get = self._ready.__getitem__  # type: ignore[method-assign,assignment]
        self._file_problems: dict[Path, list[Problem]] = {}
        self._parse_cache: ParseCache = {}
        self._hub = EventHub()
        self._reload_lock = asyncio.Lock()
        self._watcher: FolderWatcher | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._started = False
        self._monitor: asyncio.Task[None] | None = None
        self._audit = self.settings.registry.audit_log
        self.reload_counts: dict[str, int] = {"applied": 0, "unchanged": 0, "rejected": 0, "partial": 0}
        self.last_reload_at: float | None = None
        self.last_reload_seconds: float | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Validate every manifest, then connect every eager resource concurrently."""
        if self._started:
            return
        try:
            # Reloads (from the watcher) wait until the first connect round is over.
            async with self._reload_lock:
                if self._started:  # a concurrent start() got here first
                    return
                result = await asyncio.to_thread(self._load)
                if not self.path.exists():
                    raise ManifestError([Problem(str(self.path), None, None, "no such file or directory")])
                result.raise_for_problems()
                self._started = True
                entries = {name: Entry(resource, 1) for name, resource in result.resources.items()}
                self._entries = entries
                for entry in entries.values():
                    entry.make_current(self._ready)
                if self.watch:
                    # Armed before connecting, which can take connect_timeout: an edit made
                    # meanwhile is seen, and applied right after this round.
                    self._start_watcher(result)
                await asyncio.gather(*(self._bring_up(e) for e in entries.values()))
        except BaseException:
            await self.stop()  # cancelled half way: leave nothing connected or watching
            raise
        if self.settings.registry.health_interval > 0:
            self._monitor = asyncio.create_task(self._monitor_health(), name="xresource-health")
        log.info("registry started: %d resources from %s", len(entries), self.path)

    async def stop(self) -> None:
        """Stop watching, drain leases (bounded) and close every resource."""
        if not self._started:
            return
        self._started = False
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        # A reload in flight finishes first (bounded by connect_timeout); what it connected
        # is then closed with the rest instead of being added after the registry stopped.
        async with self._reload_lock:
            entries = list(self._entries.values())
            self._entries = {}
            for entry in entries:
                entry.retire()
            timeout = self.settings.registry.drain_timeout
            await asyncio.gather(*(self._retire(e, timeout, grace=0.0) for e in entries))
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

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

    def get(self, name: str) -> Any:
        """The ready resource called ``name`` (synchronous: one dict lookup, no I/O).

        Raises ``XResourceNotFoundError`` (a ``KeyError``) for an unknown name,
        ``XResourceConnectionError`` (with the cause) for a resource that is not
        ready, and ``XResourceStateError`` for a lazy one not connected yet.
        """
        return self._ready[name]  # instances call the map directly (see __init__)

    def _get_slow(self, name: str) -> Any:
        entry = self._entries.get(name)
        if entry is None:
            raise XResourceNotFoundError(name, list(self._entries))
        if entry.state is _READY:  # pragma: no cover - the ready map is kept in step
            return entry.resource
        raise self._not_ready(entry)

    async def aget(self, name: str) -> Any:
        """Like ``get`` but connects a lazy resource first."""
        return (await self._current_ready(name)).resource

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Any]:
        """Pin the current instance of ``name`` for a unit of work; reloads wait for it."""
        entry = await self._current_ready(name)
        entry.acquire()  # no await since the check: this is the current, ready version
        if self._audit:
            self._audit_line("lease_open", entry)
        try:
            yield entry.resource
        finally:
            entry.release()
            if self._audit:
                self._audit_line("lease_close", entry)

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
        base = Path(folder) if folder is not None else None
        if base is not None and not base.is_absolute():
            base = self.path / base
        found: dict[str, Any] = {}
        for name, entry in sorted(self._entries.items()):
            resource = entry.resource
            if tag is not None and tag not in resource.tags:
                continue
            if type is not None and resource.type != type:
                continue
            if base is not None:
                manifest = resource.manifest_path
                if manifest is None or not _is_under(manifest, base):
                    continue
            if entry.state is _READY:
                found[name] = resource
        return found

    def status(self) -> dict[str, ResourceStatus]:
        """A snapshot per resource: state, last error, manifest path, generation."""
        return {name: self._status(entry) for name, entry in sorted(self._entries.items())}

    def events(self) -> EventStream:
        """Async iterator over reload events from this call on (``aclose()`` ends it)."""
        return self._hub.stream()

    def on_event(self, callback: Callable[[ReloadEvent], object]) -> Callable[[], None]:
        """Call ``callback(event)`` for every reload event; returns a function that unsubscribes."""
        return self._hub.add_callback(callback)

    @property
    def ready(self) -> bool:
        return all(
            e.state is _READY or (e.resource.connect_mode == "lazy" and e.state is State.NEW)
            for e in self._entries.values()
        )

    # ---- reload ---------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Read the folder again and apply what changed; see the module docstring for the rules."""
        async with self._reload_lock:
            if not self._started:
                raise XResourceStateError(f"the registry of {self.path} is not started")
            started = time.perf_counter()
            loaded = await asyncio.to_thread(self._load)
            if not self.path.exists():
                # A vanished folder (an unmounted volume) must not remove everything that runs.
                loaded = LoadResult(
                    problems=[Problem(str(self.path), None, None, "no such file or directory")]
                )
                for name, entry in self._entries.items():
                    path = entry.resource.manifest_path
                    if path is not None:
                        loaded.names_by_file.setdefault(path, []).append(name)
                        loaded.problems.append(
                            Problem(str(path), None, None, "manifest folder is missing", name)
                        )
            outcome = await self._apply(loaded)
            self.last_reload_at = time.time()
            self.last_reload_seconds = time.perf_counter() - started
            self.reload_counts[outcome.outcome] = self.reload_counts.get(outcome.outcome, 0) + 1
            if self.watch and self._watcher is not None:
                self._rewatch_if_needed(loaded)
            return outcome

    async def _apply(self, loaded: LoadResult) -> ReloadResult:
        result = ReloadResult(problems=list(loaded.problems))
        broken = loaded.problems_by_file()
        broken_keys = {_key(p) for p in broken}
        frozen_names = {n for n, e in self._entries.items() if _key(e.resource.manifest_path) in broken_keys}
        for file in broken:
            for name in loaded.names_by_file.get(file, []):
                frozen_names.add(name)
        previous, self._file_problems = self._file_problems, broken

        # Keep what runs for every name a broken file defines, and say why.
        for name in sorted(frozen_names):
            entry = self._entries.get(name)
            if entry is not None:
                path = entry.resource.manifest_path
                problems = broken.get(path, []) if path is not None else []
                problems = problems or [p for ps in broken.values() for p in ps if p.resource == name]
                entry.error = "; ".join(str(p) for p in problems[:3]) or entry.error
                result.rejected.append(name)
        for file, problems in broken.items():
            if previous.get(file) == problems:
                continue  # reported when it broke; a rescan or an unrelated edit is no news
            self._hub.emit(
                ReloadEvent("rejected", None, path=str(file), errors=tuple(str(p) for p in problems))
            )

        incoming = {n: r for n, r in loaded.resources.items() if n not in frozen_names}
        added: dict[str, XResource] = {}
        changed: dict[str, XResource] = {}
        for name, resource in incoming.items():
            current = self._entries.get(name)
            if current is None:
                added[name] = resource
            elif current.resource.fingerprint != resource.fingerprint:
                changed[name] = resource
            else:
                result.unchanged.append(name)
                origin = resource.manifest_origin
                if origin is not None and current.resource.manifest_path != origin.path:
                    # A renamed file (same folder, same content): no reconnect, but remember where
                    # it lives now, or a later problem in that file would not keep it running.
                    current.resource.bind_manifest(origin)
                if current.error and current.state is _READY:
                    current.error = None  # the file that broke it is fixed
        removed = [n for n in self._entries if n not in incoming and n not in frozen_names]

        # Build and connect new versions first; nothing running is touched yet.
        new_entries = {n: Entry(r, 1) for n, r in added.items()}
        for name, resource in changed.items():
            new_entries[name] = Entry(resource, self._entries[name].generation + 1)
        connect_results = await asyncio.gather(*(self._connect_new(e) for e in new_entries.values()))
        good = dict(zip(new_entries, connect_results, strict=True))
        for name in changed:  # a new version adopts what user code registered on the old one
            if good[name]:
                good[name] = await self._take_over(new_entries[name], self._entries[name])

        # Swap atomically: no await between the first and the last assignment.
        retired: list[Entry] = []
        for name in added:
            self._entries[name] = new_entries[name]
            new_entries[name].make_current(self._ready)
            result.added.append(name)
        for name in changed:
            entry = new_entries[name]
            if good[name]:
                old = self._entries[name]
                old.retire()
                retired.append(old)
                self._entries[name] = entry
                entry.make_current(self._ready)
                result.replaced.append(name)
            else:
                result.rejected.append(name)
        for name in removed:
            old = self._entries.pop(name)
            old.retire()
            retired.append(old)
            result.removed.append(name)

        # Report, start retries, retire old generations in the background.
        for name in result.added:
            entry = self._entries[name]
            self._hub.emit(ReloadEvent("added", name, entry.generation, _path(entry)))
            if entry.state is State.FAILED:
                self._hub.emit(
                    ReloadEvent("failed", name, entry.generation, _path(entry), (entry.error or "",))
                )
                self._schedule_retry(entry)
        for name in result.replaced:
            entry = self._entries[name]
            self._hub.emit(ReloadEvent("replaced", name, entry.generation, _path(entry)))
        for name in changed:
            if not good[name]:
                failed = new_entries[name]
                running = self._entries[name]
                running.error = f"new version not applied: {failed.error}"
                self._hub.emit(
                    ReloadEvent("rejected", name, failed.generation, _path(failed), (failed.error or "",))
                )
        for name in result.removed:
            self._hub.emit(ReloadEvent("removed", name))
        timeout = self.settings.registry.drain_timeout
        grace = self.settings.registry.close_grace
        for old in retired:
            task = asyncio.create_task(self._retire(old, timeout, grace), name=f"retire-{old.resource.name}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self._audit and result.changed:
            audit_log.info(
                json.dumps(
                    {
                        "event": "reload",
                        "added": result.added,
                        "replaced": result.replaced,
                        "removed": result.removed,
                        "rejected": result.rejected,
                    }
                )
            )
        return result

    async def _take_over(self, new: Entry, old: Entry) -> bool:
        try:
            await new.resource.take_over(old.resource)
        except Exception as exc:  # noqa: BLE001 - the new version is rejected; the old one keeps running
            new.set_state(State.FAILED, f"{new.resource.label}: take over failed: {exc}")
            await new.close()
            return False
        return True

    async def wait_closed(self) -> None:
        """Wait until every replaced or removed instance has been drained and closed."""
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    # ---- internals ------------------------------------------------------------------------

    def _load(self) -> LoadResult:
        """Read the folder (in a worker thread); files whose bytes did not change are not parsed again."""
        loaded = load_manifests(self.path, self.settings, parse_cache=self._parse_cache)
        current = set(loaded.file_hashes.items())
        for key in [k for k in self._parse_cache if k not in current]:
            del self._parse_cache[key]  # old versions and deleted files
        return loaded

    def _entry(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise XResourceNotFoundError(name, list(self._entries))
        return entry

    def _not_ready(self, entry: Entry) -> XResourceConnectionError | XResourceStateError:
        resource = entry.resource
        if entry.state is State.NEW and resource.connect_mode == "lazy":
            return XResourceStateError(
                f"{resource.label} connects lazily and is not connected yet; "
                f"use `await registry.aget({resource.name!r})` or `registry.lease(...)`"
            )
        detail = entry.error or f"state is {entry.state.value}"
        return XResourceConnectionError(f"{resource.label} is not ready ({entry.state.value}): {detail}")

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
                await self._ensure_lazy(entry)
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
                raise self._not_ready(entry)
            return entry

    async def _ensure_lazy(self, entry: Entry) -> None:
        if entry.state in (State.NEW, State.CONNECTING) or (
            entry.state is State.FAILED and entry.retry_task is None
        ):
            await entry.wait_connected(self.settings.registry.connect_timeout)

    async def _bring_up(self, entry: Entry) -> None:
        """Connect an eager resource at start or when added; on failure, retry in the background."""
        if entry.resource.connect_mode == "lazy":
            return
        if await entry.connect(self.settings.registry.connect_timeout):
            if self._audit:
                self._audit_line("connect", entry)
        else:
            log.warning("%s", entry.error)
            self._schedule_retry(entry)

    async def _connect_new(self, entry: Entry) -> bool:
        if entry.resource.connect_mode == "lazy":
            return True
        ok = await entry.connect(self.settings.registry.connect_timeout)
        if ok and self._audit:
            self._audit_line("connect", entry)
        return ok

    def _schedule_retry(self, entry: Entry) -> None:
        if entry.retry_task is None or entry.retry_task.done():
            entry.retry_task = asyncio.create_task(self._retry(entry), name=f"retry-{entry.resource.name}")

    async def _retry(self, entry: Entry) -> None:
        cfg = self.settings.registry
        delay = cfg.retry_initial
        while entry.state is State.FAILED and self._entries.get(entry.resource.name) is entry:
            await asyncio.sleep(delay)
            if self._entries.get(entry.resource.name) is not entry:
                return
            if await entry.connect(cfg.connect_timeout):
                self._hub.emit(ReloadEvent("recovered", entry.resource.name, entry.generation, _path(entry)))
                if self._audit:
                    self._audit_line("connect", entry)
                return
            delay = min(delay * 2, cfg.retry_max)

    async def _monitor_health(self) -> None:
        """Mark ready resources whose backend stopped answering as failed, and retry them."""
        cfg = self.settings.registry
        while True:
            await asyncio.sleep(cfg.health_interval)
            entries = [e for e in self._entries.values() if e.state is _READY]
            results = await asyncio.gather(
                *(asyncio.wait_for(e.resource.validate_connection(), cfg.connect_timeout) for e in entries),
                return_exceptions=True,
            )
            for entry, ok in zip(entries, results, strict=True):
                if (
                    ok is True
                    or entry.state is not _READY
                    or self._entries.get(entry.resource.name) is not entry
                ):
                    continue
                reason = entry.resource.last_error or (
                    f"{entry.resource.label}: health check failed"
                    + (f" ({type(ok).__name__})" if isinstance(ok, BaseException) else "")
                )
                entry.set_state(State.FAILED, reason)
                self._hub.emit(
                    ReloadEvent("failed", entry.resource.name, entry.generation, _path(entry), (reason,))
                )
                self._schedule_retry(entry)

    async def _retire(self, entry: Entry, timeout: float, grace: float) -> None:
        entry.cancel_tasks()
        await entry.drain(timeout, grace)
        await entry.close()
        if self._audit:
            self._audit_line("disconnect", entry)

    def _status(self, entry: Entry) -> ResourceStatus:
        resource = entry.resource
        state = entry.state
        connection_state = getattr(resource, "connection_state", None)
        if state is _READY and connection_state in (State.RECONNECTING, State.FAILED):
            state = connection_state
        error = entry.error or (resource.last_error if state is not _READY else None)
        return ResourceStatus(
            name=resource.name,
            type=resource.type,
            state=state.value,
            error=error,
            path=str(resource.manifest_path) if resource.manifest_path else None,
            generation=entry.generation,
            leases=entry.leases,
            connect_mode=resource.connect_mode,
            tags=tuple(resource.tags),
            since=entry.since,
            manifest_hash=resource.manifest_hash,
            metadata=resource.get_metadata(),
        )

    def _audit_line(self, event: str, entry: Entry) -> None:
        audit_log.info(
            json.dumps(
                {
                    "event": event,
                    "resource": entry.resource.name,
                    "type": entry.resource.type,
                    "generation": entry.generation,
                    "leases": entry.leases,
                    "at": time.time(),
                }
            )
        )

    # ---- watching -------------------------------------------------------------------------

    def _watch_folders(self, loaded: LoadResult) -> set[Path]:
        folders = {self.path if self.path.is_dir() else self.path.parent}
        for resource in loaded.resources.values():
            for secret_file in resource.referenced_files():
                folders.add(secret_file.parent)
        for entry in self._entries.values():
            for secret_file in entry.resource.referenced_files():
                folders.add(secret_file.parent)
        return {f for f in folders if f.exists()}

    def _start_watcher(self, loaded: LoadResult) -> None:
        cfg = self.settings.registry
        self._watcher = FolderWatcher(
            self._watch_folders(loaded),
            self._on_watch_event,
            debounce_ms=cfg.watch_debounce_ms,
            step_ms=cfg.watch_step_ms,
            rescan_interval=cfg.rescan_interval,
        )
        self._watcher.start()

    def _rewatch_if_needed(self, loaded: LoadResult) -> None:
        assert self._watcher is not None
        wanted = sorted({f.resolve() for f in self._watch_folders(loaded)})
        if wanted != self._watcher.folders:
            old = self._watcher
            self._start_watcher(loaded)
            task = asyncio.create_task(old.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _on_watch_event(self, reason: str) -> None:
        if self._started:
            try:
                result = await self.reload()
            except XResourceStateError:
                return  # stopped while this event waited for the reload lock
            if result.changed or result.problems:
                log.info("reload after %s: %s", reason, result.outcome)

    def install_signal_handlers(self) -> None:
        """Reload on SIGHUP (for ``xresource serve`` and services that want it)."""
        loop = asyncio.get_running_loop()

        def on_sighup() -> None:
            if not self._started:
                return
            task = asyncio.create_task(self._reload_on_signal(), name="xresource-sighup")
            self._closing.add(task)  # held until done; stop() waits for it
            task.add_done_callback(self._closing.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)

    async def _reload_on_signal(self) -> None:
        try:
            result = await self.reload()
        except XResourceStateError:
            return  # stopped meanwhile
        except Exception:
            log.exception("reload after SIGHUP failed")
            return
        log.info("reload after SIGHUP: %s", result.outcome)


def _key(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def _path(entry: Entry) -> str | None:
    path = entry.resource.manifest_path
    return str(path) if path is not None else None


def _is_under(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


class _ReadyMap(dict[str, XResource]):
    """name -> ready, current instance; a missing name asks ``fallback`` (which raises why)."""

    __slots__ = ("_fallback",)

    def __init__(self, fallback: Callable[[str], Any]) -> None:
        super().__init__()
        self._fallback = fallback

    def __missing__(self, name: str) -> Any:
        return self._fallback(name)
