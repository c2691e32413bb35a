"""Carrying out a reload diff on the running entries: connect first, swap atomically, retire.

The diff (:mod:`diff`) decides; this module acts:

- new versions (added and replaced names) are built and connected
  concurrently while the old ones keep serving;
- a replaced name's new version takes over from the old one
  (``take_over``), then the swap happens with no ``await`` between the
  first and the last assignment; a new version that fails to connect or to
  take over is disconnected and the old one keeps serving, with the reason
  as its ``pending`` state;
- a cosmetic change (only live fields) is applied to the running instance;
- replaced and removed versions are retired in the background (drain, close); a
  replaced database pool gives its connections to its successor as they free up
  (``prepare_takeover`` before the connect, ``begin_drain`` after the swap);
- every outcome becomes an event that says why (the changed fields).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Mapping

from xresource.registry.audit import Audit
from xresource.registry.diff import Change, Diff, Version
from xresource.registry.entry import Entry
from xresource.registry.events import EventHub, EventKind, ReloadEvent, ReloadResult
from xresource.registry.supervisor import Supervisor
from xresource.resource import State, XResource

log = logging.getLogger("xresource.registry")


class Applier:
    """Applies diffs to one registry's entries (the registry holds its reload lock meanwhile)."""

    def __init__(
        self,
        entries: dict[str, Entry],
        ready_map: dict[str, XResource],
        hub: EventHub,
        supervisor: Supervisor,
        audit: Audit,
    ) -> None:
        self.entries = entries
        self.ready_map = ready_map
        self.hub = hub
        self.supervisor = supervisor
        self.audit = audit
        self._file_problems: dict[str, list[str]] = {}

    def new_entry(self, resource: XResource, generation: int, version: Version) -> Entry:
        if resource.state is not State.NEW:
            # Never connect an instance that is (or was) running: a version read again from an
            # unchanged file may be the very object that runs.
            resource = copy.copy(resource)
        return Entry(resource, generation, version, self.supervisor.tasks)

    async def apply(
        self, diff: Diff, resources: Mapping[str, XResource], versions: Mapping[str, Version]
    ) -> ReloadResult:
        result = ReloadResult(problems=list(diff.problems), held=sorted(diff.held))
        self._report_files(diff)
        for change in diff.of_kind("rejected"):
            entry = self.entries[change.name]
            entry.error = "; ".join(change.errors) or entry.error
            entry.set_pending(f"its file has problems: {change.errors[0] if change.errors else '?'}")
            result.rejected.append(change.name)
        for change in diff.of_kind("unchanged"):
            self._unchanged(change, resources.get(change.name), versions.get(change.name), result)

        # Cosmetic changes go into the running instance: same object, same pool.
        incoming = [*diff.of_kind("added"), *diff.of_kind("replaced")]
        for change in diff.of_kind("updated"):
            if not await self._update_in_place(change, resources[change.name], versions[change.name], result):
                incoming.append(change)  # the instance refused the update: replace it instead

        # Build and connect new versions first; nothing running is touched yet.
        new_entries: dict[str, Entry] = {}
        for change in incoming:
            running = self.entries.get(change.name)
            generation = running.generation + 1 if running is not None else 1
            new_entries[change.name] = self.new_entry(
                resources[change.name], generation, versions[change.name]
            )
        try:
            outcomes = await asyncio.gather(*(self._prepare(c, new_entries[c.name]) for c in incoming))
        except BaseException:
            # Cancelled (the caller's reload, a stop): nothing of this round may stay connected.
            await asyncio.gather(*(e.close() for e in new_entries.values()), return_exceptions=True)
            raise
        failures = dict(zip((c.name for c in incoming), outcomes, strict=True))

        # Swap atomically: no await between the first and the last assignment.
        retired: list[tuple[Entry, Entry | None]] = []  # (old version, its successor)
        for change in incoming:
            entry = new_entries[change.name]
            old = self.entries.get(change.name)
            if old is None:
                self.entries[change.name] = entry
                entry.make_current(self.ready_map)
                result.added.append(change.name)
            elif failures[change.name] is None:
                old.retire()
                retired.append((old, entry))
                self.entries[change.name] = entry
                entry.make_current(self.ready_map)
                result.replaced.append(change.name)
            else:
                result.rejected.append(change.name)
        for change in diff.of_kind("removed"):
            old = self.entries.pop(change.name)
            old.retire()
            retired.append((old, None))
            result.removed.append(change.name)

        # Report, start retries, retire old versions in the background.
        changes = diff.changes
        for name in result.added:
            entry = self.entries[name]
            self.hub.emit(ReloadEvent("added", name, entry.generation, _path(entry)))
            if entry.state is State.FAILED:
                self.hub.emit(
                    ReloadEvent("failed", name, entry.generation, _path(entry), (entry.error or "",))
                )
                self.supervisor.schedule_retry(entry)
        for name in result.replaced:
            entry = self.entries[name]
            self.hub.emit(_event("replaced", entry, changes[name]))
        for change in incoming:
            reason = failures[change.name]
            if reason is not None and change.name in self.entries:
                failed, running = new_entries[change.name], self.entries[change.name]
                running.error = f"new version not applied: {reason}"
                running.set_pending(reason, pending_changes(change))
                self.hub.emit(_event("rejected", failed, change, (reason,)))
        for name in result.removed:
            self.hub.emit(ReloadEvent("removed", name, changes=changes[name].fields))
        for old, successor in retired:
            self.supervisor.retire_later(old, successor)
        if result.changed:
            self.audit.reload(
                {k: getattr(result, k) for k in ("added", "replaced", "updated", "removed", "rejected")}
            )
        return result

    async def _prepare(self, change: Change, entry: Entry) -> str | None:
        """Connect a new version and let it take over from the old; ``None`` when it may be swapped in."""
        old = self.entries.get(change.name)
        if old is None:
            await self.supervisor.connect(entry)  # added even if it fails: then retried in the background
            return None
        if entry.resource.connect_mode == "lazy" and old.resource.state is not State.READY:
            return None  # nothing runs that could be handed over; it connects on first use
        # A database opens small and grows as the old version drains (the surge rule).
        entry.resource.prepare_takeover(old.resource, surge=self.supervisor.settings.reload_surge)
        if not await self.supervisor.connect_now(entry):
            reason = f"new version failed to connect: {entry.error}"
            await entry.close()
            return reason
        try:
            await entry.resource.take_over(old.resource)
        except Exception as exc:  # noqa: BLE001 - a refusal of any kind keeps the old version
            reason = (
                f"new version failed to take over: {type(exc).__name__}: {entry.resource.scrub(str(exc))}"
            )
            log.warning("%s: %s", entry.resource.label, reason)
            await entry.close()
            return reason
        return None

    async def _update_in_place(
        self, change: Change, desired: XResource, version: Version, result: ReloadResult
    ) -> bool:
        """Apply live fields to the running instance; False when it refuses (then it is replaced)."""
        entry = self.entries[change.name]
        names = _field_names(type(entry.resource))
        values = {names.get(f.field, f.field): None for f in change.fields}
        values = {name: getattr(desired, name) for name in values}
        try:
            await entry.resource.apply_live_update(values)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot take it gets a new instance
            log.warning("%s: live update refused (%s); replacing it instead", entry.resource.label, exc)
            return False
        entry.generation += 1
        origin = desired.manifest_origin
        if origin is not None:
            entry.resource.bind_manifest(origin)
        entry.rebind(version)
        if entry.error and entry.state is State.READY:
            entry.error = None
        entry.set_pending(None)
        result.updated.append(change.name)
        self.hub.emit(_event("updated", entry, change))
        return True

    def _unchanged(
        self, change: Change, desired: XResource | None, version: Version | None, result: ReloadResult
    ) -> None:
        entry = self.entries[change.name]
        result.unchanged.append(change.name)
        if change.name in result.held:
            return  # its file is being written: decided once it settles
        if version is not None and version.path != entry.version.path:
            # A renamed file (same content): no reconnect, but remember where it lives now, or a
            # later problem in that file would not keep it running.
            origin = desired.manifest_origin if desired is not None else None
            if origin is not None:
                entry.resource.bind_manifest(origin)
        if version is not None:
            entry.rebind(version)
        if entry.error and entry.state is State.READY:
            entry.error = None  # the file that broke it is fixed, or the new version is gone
        entry.set_pending(None)

    def _report_files(self, diff: Diff) -> None:
        """A file-level ``rejected`` event when a file breaks (not again for every reload)."""
        broken = {f: [str(p) for p in ps] for f, ps in diff.problems_by_file().items()}
        previous, self._file_problems = self._file_problems, broken
        for file, problems in broken.items():
            if previous.get(file) != problems:
                self.hub.emit(ReloadEvent("rejected", None, path=file, errors=tuple(problems)))


def _event(kind: EventKind, entry: Entry, change: Change, errors: tuple[str, ...] = ()) -> ReloadEvent:
    return ReloadEvent(
        kind,
        entry.resource.name,
        entry.generation,
        _path(entry),
        errors,
        changes=change.fields,
        secrets_rotated=change.secrets_rotated,
    )


def pending_changes(change: Change) -> tuple[str, ...]:
    """What a version that is not running would change, whole values (``field: old -> new``)."""
    rotated = tuple(f"secret {ref} rotated" for ref in change.secrets_rotated)
    return tuple(f.describe(limit=None) for f in change.fields) + rotated


@functools.cache
def _field_names(cls: type[XResource]) -> dict[str, str]:
    """Manifest key (alias or name) -> model field name."""
    return {(info.alias or name): name for name, info in cls.model_fields.items()}


def _path(entry: Entry) -> str | None:
    path = entry.resource.manifest_path
    return str(path) if path is not None else None
