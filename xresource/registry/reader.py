"""Reading the folder for the live registry: what the files say now, as the diff needs it.

It reads what the validation pipeline reads (:mod:`xresource.manifests`), and
adds what only a running registry needs:

- it remembers each file's last read and merges the files by name one file at
  a time (:mod:`merged`), so a reload costs the files that changed;
- targeted reads: given the paths the watcher reported, only those files are
  looked at (a folder among them is listed again, for files added or removed
  in it). An event it cannot attribute means a full scan: an ignore file or a
  ``.git`` appearing, an event in a folder reached through a symbolic link (a
  ConfigMap's ``..data`` swap changes no visible name), a folder listed twice.
  A full scan also serves ``reload()``, ``SIGHUP`` and the periodic rescan;
- identity: a file whose device, inode, size, mtime and ctime are what they
  were when it was last read (and not within the racy window) is not read
  again; when the identity changed, the content hash decides (a ConfigMap swap
  changes every identity: each file is then read and hashed once, and a file
  whose bytes did not change keeps what it gave, unparsed and unvalidated);
- settling: a file modified within ``settle_ms`` (mtime) is held back, not
  read, because a writer may still be filling it (shell ``>``, tools that
  truncate and then write in pieces). It is read once its size and mtime
  have been stable for the window (either by its mtime's age or as observed
  across reads, which also copes with a clock that disagrees with the file
  system's). A name that now leads to another file (device and inode
  changed since the last read) was renamed into place, complete, and is
  read at once. Held files are looked at again on every read;
- the digests of referenced secret files (:mod:`secret_files`), so a rotated
  secret replaces the resource: all of them on a full read, those in a folder
  the watcher reported on a targeted one. Only the live registry reads secrets.

It runs in a worker thread; everything it returns is plain data.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xresource.manifests import LoadResult
from xresource.manifests.loader import FileLoad, load_raw, read_raw
from xresource.manifests.scan import IGNORE_FILE, IgnoreRules, is_manifest_name, list_manifests
from xresource.registry import secret_files
from xresource.registry.diff import Desired
from xresource.registry.merged import Merged, live_names, version_of
from xresource.safe_files import FilePolicy
from xresource.settings import Settings

__all__ = ["RACY_SECONDS", "FolderReader", "Snapshot", "live_names", "version_of"]

RACY_SECONDS = 2.0
"""A file changed less than this long ago is read again even if its identity looks unchanged:
two writes within one tick of the file system's clock can leave size and times equal (git's
"racy" rule)."""

Identity = tuple[int, int, int, int, int]


@dataclass(slots=True)
class Snapshot:
    """One read of the folder."""

    loaded: LoadResult
    desired: Desired
    settles_in: float
    """Seconds until the youngest held-back file may be read (0: none held back)."""
    secret_files: frozenset[str] = frozenset()
    """The ``${file:...}`` targets the resources read reference (their folders are watched)."""
    full: bool = True
    """Whether the whole folder was scanned (False: only what the watcher reported)."""


Layering = Callable[[LoadResult, bool], tuple[LoadResult, float]]
"""``(base, settle) -> (merged, settles_in)``: overlay folders applied on the base folder's read."""


class FolderReader:
    """Reads one registry's folder again and again, remembering what makes the next read cheap."""

    def __init__(self, path: Path, settings: Settings, *, layering: Layering | None = None) -> None:
        self.path = path
        self.settings = settings
        self._layering = layering
        self._root = str(path)
        self._prefix = "" if self._root == "." else self._root.rstrip("/") + "/"
        self._merged = Merged()
        self._identity: dict[str, Identity] = {}  # files whose identity proves them unchanged
        self._observed: dict[str, tuple[tuple[int, int, int, int], float]] = {}
        self._rules = IgnoreRules()
        self._linked = True  # until a full scan shows the folder holds no symbolic link
        self._real_root: str | None = None
        self._references: dict[str, list[str]] = {}  # name -> its ${file:...} targets
        self._secret_folders: dict[str, str] = {}  # target -> its folder, resolved
        self._defaults_reference: dict[str, bool] = {}  # type -> its settings defaults hold one

    # ---- reading ------------------------------------------------------------------------------

    def read(self, *, settle: bool, changed: Collection[str] | None = None) -> Snapshot:
        """Read and validate the manifests; with ``settle``, hold back files still being written.

        ``changed``: the paths a watcher reported (absolute); only those are looked at, plus the
        files held back last time, unless one cannot be attributed (then the folder is scanned).
        An empty collection looks only at the held-back files. ``None``: scan the folder.
        """
        read = _Read(settle, self.settings.registry.settle_ms / 1000)
        targets = None if changed is None else self._targets(changed)
        if targets is None:
            self._scan(read)
            redigest: Iterable[str] = list(self._references)
        else:
            files, gone, touched_folders = targets
            for path in gone:
                read.affected |= self._merged.remove(path)
                self._forget(path)
            for path, info in files.items():
                self._look(path, info, read)
            redigest = self._referencing(touched_folders)
        self._update_secrets(read.affected, redigest)
        return self._snapshot(read, full=targets is None)

    def _scan(self, read: _Read) -> None:
        self._rules = IgnoreRules()  # ignore files are read again on every full scan
        listing = list_manifests([self.path], self._rules)
        self._linked = listing.linked
        self._real_root = os.path.realpath(self._root) if os.path.isdir(self._root) else None
        known = self._identity
        for path, info in listing.files:
            # The common case inline (a reload of an unchanged folder is this loop): the same
            # file, untouched since it was read, is not looked at again.
            if info is None or known.get(path) != (
                info.st_dev,
                info.st_ino,
                info.st_size,
                info.st_mtime_ns,
                info.st_ctime_ns,
            ):
                self._look(path, info, read)
        gone = self._merged.paths.keys() - {found.path for found in listing.files}
        for path in gone:
            read.affected |= self._merged.remove(path)
            self._forget(path)

    def _look(self, path: str, info: os.stat_result | None, read: _Read) -> None:
        """Look at one listed file: skip it, hold it back, or read it and merge what it gives."""
        identity = _identity(info)
        if identity is not None and self._identity.get(path) == identity:
            return  # the same file, untouched since it was read: not read again
        merged = self._merged
        remaining = self._unsettled_for(path, info, read.window)  # also records what it saw
        file = merged.paths.get(path) or Path(path)
        if read.settle and remaining > 0:
            read.settles_in = max(read.settles_in, remaining)
            read.affected |= merged.set_file(path, file, None)
            return
        raw, problem, after = read_raw(path, self.settings.registry.max_manifest_bytes)
        if raw is None:
            if not os.path.lexists(path):
                # Deleted between the listing and the read: as if it had not been listed.
                read.affected |= merged.remove(path)
                self._forget(path)
                return
            load = FileLoad(file, "", problems=[problem] if problem is not None else [])
        else:
            if read.settle and _identity(after) != identity:
                # Written to since it was listed (an in-place save truncated it, say): what we
                # read may be half a file.
                self._unsettled_for(path, after, read.window)
                read.settles_in = max(read.settles_in, read.window)
                read.affected |= merged.set_file(path, file, None)
                return
            digest = hashlib.sha256(raw).hexdigest()
            previous = merged.loads.get(path)
            if previous is not None and previous.digest == digest and not previous.problems:
                load = previous  # new identity, same bytes (a ConfigMap swap, a touch): as it was
            else:
                load = load_raw(file, raw, digest, self.settings)
        if identity is not None and _identity(after) == identity and _settled_long_ago(info):
            self._identity[path] = identity
        else:
            self._identity.pop(path, None)
        read.affected |= merged.set_file(path, file, load)

    def _forget(self, path: str) -> None:
        self._identity.pop(path, None)
        self._observed.pop(path, None)

    # ---- what an event touches ----------------------------------------------------------------

    def _targets(
        self, changed: Collection[str]
    ) -> tuple[dict[str, os.stat_result | None], set[str], set[str]] | None:
        """The files to look at, the files gone and the folders touched; ``None``: scan instead."""
        files: dict[str, os.stat_result | None] = {}
        for path in self._merged.held:
            files[path] = _stat(path)
        gone: set[str] = set()
        touched: set[str] = set()
        if self._real_root is None and changed:
            return None  # never scanned, or the root is a single file: cheap to read again
        for event in changed:
            touched.add(os.path.dirname(event))
            relative = self._relative(event)
            if relative is None:
                continue  # outside the folder: a secret file's folder
            if not relative:
                return None  # the folder itself
            if self._linked:
                return None  # links may show a change only by an event elsewhere
            parts = relative.split("/")
            dotted = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
            if dotted is not None:
                if dotted == len(parts) - 1 and parts[dotted] in (IGNORE_FILE, ".git"):
                    return None  # the rules changed (or where the work tree starts)
                continue  # hidden: nothing listed lives there
            if not self._attribute(self._prefix + relative, files, gone):
                return None
        return files, gone, touched

    def _relative(self, event: str) -> str | None:
        root = self._real_root
        if root is None:
            return None
        if event == root:
            return ""
        base = root if root.endswith("/") else root + "/"
        return event[len(base) :] if event.startswith(base) else None

    def _attribute(self, path: str, files: dict[str, os.stat_result | None], gone: set[str]) -> bool:
        """Add what ``path`` (an event's path, as listed) means to ``files`` and ``gone``."""
        try:
            info = os.lstat(path)
        except OSError:
            info = None
        if info is None or not self._listable(path):
            gone.update(self._known_at(path))
            return True
        if stat.S_ISLNK(info.st_mode):
            return False  # a new link: the folder now holds links (a full scan learns it)
        if stat.S_ISDIR(info.st_mode):
            if self._rules.ignored(path, is_dir=True, top=self._root):
                gone.update(self._known_at(path))
                return True
            listing = list_manifests([path], self._rules)
            if listing.linked:
                return False
            found = {f.path: f.info for f in listing.files}
            files.update(found)
            gone.update(p for p in self._known_at(path) if p not in found)
            return not any(f.info is not None and f.info.st_nlink > 1 for f in listing.files)
        name = os.path.basename(path)
        if stat.S_ISREG(info.st_mode) and is_manifest_name(name):
            if self._rules.ignored(path, is_dir=False, top=self._root):
                gone.update(self._known_at(path))
                return True
            files[path] = info
            return info.st_nlink == 1  # a second name for the file: the scan decides which counts
        gone.update(self._known_at(path))  # not a manifest (any longer)
        return True

    def _listable(self, path: str) -> bool:
        """No folder between the root and ``path`` is ignored (nothing below it can be listed)."""
        folder = os.path.dirname(path)
        root = self._prefix.rstrip("/") or "."
        folders = []
        while len(folder) > len(root) and folder.startswith(self._prefix):
            folders.append(folder)
            folder = os.path.dirname(folder)
        return not any(self._rules.ignored(f, is_dir=True, top=self._root) for f in reversed(folders))

    def _known_at(self, path: str) -> list[str]:
        """Files listed before at ``path`` or below it."""
        merged = self._merged
        if path in merged.paths:
            return [path]
        below = path.rstrip("/") + "/"
        if not any(f == path or f.startswith(below) for f in merged.folders):
            return []  # the common case (a temporary file renamed away): no walk over every file
        return [p for p in merged.paths if p.startswith(below)]

    # ---- settling -----------------------------------------------------------------------------

    def _unsettled_for(self, file: str, info: os.stat_result | None, window: float) -> float:
        if info is None:
            return 0.0  # the reader reports what is wrong with it
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        now = time.monotonic()
        seen = self._observed.get(file)
        if seen is not None and seen[0][:2] != key[:2]:
            # Another file under this name: renamed into place (editors, ConfigMap and git-sync
            # swaps, most config tools), so it was complete before it appeared.
            self._observed[file] = (key, now - window)
            return 0.0
        if seen is not None and seen[0][2] != key[2] and seen[0][3] == key[3]:
            # The size moved but the modification time did not (yet): Linux can show a
            # truncation or a write a moment before its timestamp, so the file's age would
            # be its previous version's. It is being written now.
            self._observed[file] = (key, now)
            return window
        if seen is None or seen[0] != key:
            self._observed[file] = (key, now)
            stable_for = 0.0
        else:
            stable_for = now - seen[1]
        age = time.time() - info.st_mtime
        if age >= window or stable_for >= window:
            return 0.0
        return window - max(age, stable_for, 0.0)

    # ---- secrets and the snapshot -------------------------------------------------------------

    def _referencing(self, folders: Iterable[str]) -> list[str]:
        """Names referencing a secret file in (or below) one of ``folders``."""
        touched = set(folders)
        if not touched or not self._references:
            return []
        hit = set()
        for target, folder in self._secret_folders.items():
            if any(t == folder or t.startswith(folder.rstrip("/") + "/") for t in touched):
                hit.add(target)
        return [name for name, targets in self._references.items() if hit.intersection(targets)]

    def _update_secrets(self, affected: Iterable[str], redigest: Iterable[str]) -> None:
        merged = self._merged
        for name in affected:
            fields = merged.fields.get(name)
            if fields is not None and self._may_reference(name, fields):
                targets = secret_files.secret_references(fields)
            else:
                targets = []
            if targets:
                self._references[name] = targets
                for target in targets:
                    if target not in self._secret_folders:
                        self._secret_folders[target] = os.path.realpath(os.path.dirname(target))
            else:
                self._references.pop(name, None)
        names = set(redigest) | {n for n in affected if n in self._references}
        if not names:
            return
        policy = FilePolicy.from_settings(self.settings.registry)
        read_once: dict[str, str] = {}
        for name in names:
            version = merged.versions.get(name)
            references = self._references.get(name)
            if version is None or not references:
                continue
            digests = secret_files.digests(references, policy, read_once)
            if digests != version.secrets:
                merged.versions[name] = replace(version, secrets=digests)

    def _may_reference(self, name: str, fields: dict[str, Any]) -> bool:
        """Whether ``name``'s fields may hold a reference (else the walk for them is skipped)."""
        files = self._merged.declared.get(name)
        if files is None or len(files) != 1 or self._merged.loads[files[0]].references:
            return True
        # Its file cannot hold one; the settings defaults merged into its fields might.
        type_name = str(fields.get("type"))
        found = self._defaults_reference.get(type_name)
        if found is None:
            defaults = self.settings.defaults_for(type_name)
            found = self._defaults_reference[type_name] = bool(secret_files.secret_references(defaults))
        return found

    def _snapshot(self, read: _Read, *, full: bool) -> Snapshot:
        merged = self._merged
        problems = merged.problems()
        loaded = merged.load_result(list(problems))
        if self._layering is not None:
            # Overlay folders are read again whole, and change what they touch: those names
            # get versions of their own (the others keep the base's, digests included).
            loaded, overlays_settle_in = self._layering(loaded, read.settle)
            read.settles_in = max(read.settles_in, overlays_settle_in)
            desired, targets = self._desired_of(loaded)
        else:
            desired = Desired(
                versions=dict(merged.versions),
                problems=problems,
                names_by_file=dict(merged.names_by_file),
                held_files=frozenset(merged.held),
            )
            targets = frozenset(t for ts in self._references.values() for t in ts)
        return Snapshot(loaded, desired, read.settles_in, targets, full)

    def _desired(self, loaded: LoadResult) -> Desired:
        """The diff's view of any load (manifests given in code use it too)."""
        return self._desired_of(loaded)[0]

    def _desired_of(self, loaded: LoadResult) -> tuple[Desired, frozenset[str]]:
        merged = self._merged
        policy = FilePolicy.from_settings(self.settings.registry)
        read_once: dict[str, str] = {}
        versions = {}
        targets: set[str] = set()
        for name, resource in loaded.resources.items():
            if merged.resources.get(name) is resource:
                versions[name] = merged.versions[name]  # as the base read it (digests included)
                targets.update(self._references.get(name, ()))
                continue
            fields = loaded.fields.get(name, {})
            version = version_of(resource, fields, secrets={})
            references = secret_files.secret_references(fields)
            if references:
                version = replace(version, secrets=secret_files.digests(references, policy, read_once))
                targets.update(references)
            versions[name] = version
        desired = Desired(
            versions=versions,
            problems=list(loaded.problems),
            names_by_file={str(f): names for f, names in loaded.names_by_file.items()},
            held_files=frozenset(str(f) for f in loaded.held),
        )
        return desired, frozenset(targets)


@dataclass(slots=True)
class _Read:
    """What one read collects as it goes."""

    settle: bool
    window: float
    settles_in: float = 0.0
    affected: set[str] = field(default_factory=set)
    """Names whose files were read again, added, held back or removed."""


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _identity(info: os.stat_result | None) -> Identity | None:
    """(device, inode, size, mtime, ctime): a change of content changes at least one of them."""
    if info is None:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _settled_long_ago(info: os.stat_result | None) -> bool:
    if info is None:
        return False
    return time.time() - max(info.st_mtime, info.st_ctime) > RACY_SECONDS
