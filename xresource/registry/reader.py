"""Reading the folder for the live registry: what the files say now, as the diff needs it.

On top of :func:`load_manifests` it adds what only a running registry needs:

- a parse cache, so files whose bytes did not change are not parsed again;
- settling: a file modified within ``settle_ms`` (mtime) is held back, not
  read, because a writer may still be filling it (shell ``>``, tools that
  truncate and then write in pieces). It is read once its size and mtime
  have been stable for the window (either by its mtime's age or as observed
  across reads, which also copes with a clock that disagrees with the file
  system's). A name that now leads to another file (device and inode
  changed since the last read) was renamed into place, complete, and is
  read at once;
- identity: a file whose device, inode, size, mtime and ctime are what they
  were when it was last read (and not within the racy window) is not read
  again; when the identity changed, the content hash decides (a ConfigMap
  swap changes every identity: each file is then read and hashed once, and
  unchanged content is not parsed again);
- the digests of referenced secret files (:mod:`secret_files`), so a rotated
  secret replaces the resource. Only the live registry reads secrets.

It runs in a worker thread; everything it returns is plain data.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xresource.manifests import LoadResult, load_manifests
from xresource.manifests.loader import FileLoad, ParseCache, load_file
from xresource.registry import secret_files
from xresource.registry.diff import Desired, Version
from xresource.resource import XResource
from xresource.safe_files import FilePolicy
from xresource.settings import Settings


@dataclass(slots=True)
class Snapshot:
    """One read of the folder."""

    loaded: LoadResult
    desired: Desired
    settles_in: float
    """Seconds until the youngest held-back file may be read (0: none held back)."""


Layering = Callable[[LoadResult, bool], tuple[LoadResult, float]]
"""``(base, settle) -> (merged, settles_in)``: overlay folders applied on the base folder's read."""


class FolderReader:
    """Reads one registry's folder again and again, remembering what makes the next read cheap."""

    def __init__(self, path: Path, settings: Settings, *, layering: Layering | None = None) -> None:
        self.path = path
        self.settings = settings
        self._layering = layering
        self._parse_cache: ParseCache = {}
        self._observed: dict[Path, tuple[tuple[int, int, int, int], float]] = {}
        self._by_identity: dict[Path, tuple[tuple[int, ...], FileLoad]] = {}
        self._versions: dict[int, tuple[XResource, Version, list[str]]] = {}

    def read(self, *, settle: bool) -> Snapshot:
        """Read and validate every manifest; with ``settle``, hold back files still being written."""
        settles_in = 0.0
        window = self.settings.registry.settle_ms / 1000

        def load(file: Path) -> FileLoad | None:
            nonlocal settles_in
            info = _stat(file)
            remaining = self._unsettled_for(file, info, window)  # also records what it saw
            if settle and remaining > 0:
                settles_in = max(settles_in, remaining)
                return None
            identity = _identity(info)
            cached = self._by_identity.get(file)
            if identity is not None and cached is not None and cached[0] == identity:
                return cached[1]  # the same file, untouched since it was read: not read again
            loaded = load_file(file, self.settings, self._parse_cache)
            after = _stat(file)
            if settle and _identity(after) != identity:
                # Written to while we read it (the check above saw the old, settled file; an
                # in-place save truncated it since): what we read may be half a file.
                self._unsettled_for(file, after, window)
                settles_in = max(settles_in, window)
                return None
            if identity is not None and _settled_long_ago(info):
                self._by_identity[file] = (identity, loaded)
            else:
                self._by_identity.pop(file, None)
            return loaded

        loaded = load_manifests(self.path, self.settings, loader=load)
        current = set(loaded.file_hashes.items())
        for key in [k for k in self._parse_cache if k not in current and k[0] not in loaded.held]:
            del self._parse_cache[key]  # old versions and deleted files
        present = set(loaded.files)
        for file in [f for f in self._observed if f not in present]:
            del self._observed[file]
        for file in [f for f in self._by_identity if f not in present]:
            del self._by_identity[file]
        if self._layering is not None:
            loaded, overlays_settle_in = self._layering(loaded, settle)
            settles_in = max(settles_in, overlays_settle_in)
        return Snapshot(loaded, self._desired(loaded), settles_in)

    def _unsettled_for(self, file: Path, info: os.stat_result | None, window: float) -> float:
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

    def _desired(self, loaded: LoadResult) -> Desired:
        policy = FilePolicy.from_settings(self.settings.registry)
        read_once: dict[str, str] = {}
        versions: dict[str, Version] = {}
        known, self._versions = self._versions, {}
        for name, resource in loaded.resources.items():
            # A resource read from an untouched file is the same object as last time: so is its
            # version, but for the secret files' digests, which are read on every reload.
            cached = known.get(id(resource))
            if cached is None or cached[0] is not resource:
                fields = loaded.fields.get(name, {})
                cached = (
                    resource,
                    version_of(resource, fields, secrets={}),
                    secret_files.secret_references(fields),
                )
            self._versions[id(resource)] = cached
            version, references = cached[1], cached[2]
            if references:
                version = replace(version, secrets=secret_files.digests(references, policy, read_once))
            versions[name] = version
        return Desired(
            versions=versions,
            problems=list(loaded.problems),
            names_by_file={str(f): names for f, names in loaded.names_by_file.items()},
            held_files=frozenset(str(f) for f in loaded.held),
        )


RACY_SECONDS = 2.0
"""A file changed less than this long ago is read again even if its identity looks unchanged:
two writes within one tick of the file system's clock can leave size and times equal (git's
"racy" rule)."""


def _stat(file: Path) -> os.stat_result | None:
    try:
        return file.stat()
    except OSError:
        return None


def _identity(info: os.stat_result | None) -> tuple[int, ...] | None:
    """(device, inode, size, mtime, ctime): a change of content changes at least one of them."""
    if info is None:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _settled_long_ago(info: os.stat_result | None) -> bool:
    if info is None:
        return False
    return time.time() - max(info.st_mtime, info.st_ctime) > RACY_SECONDS


def version_of(
    resource: XResource,
    fields: dict[str, Any],
    *,
    secrets: dict[str, str] | None = None,
    folder: str | None = None,
) -> Version:
    """The diff's view of a loaded resource (``folder`` defaults to its manifest's folder)."""
    path = resource.manifest_path
    if folder is None and path is not None:
        folder = os.path.dirname(os.path.abspath(path))
    return Version(
        name=resource.name,
        type=resource.type,
        path=str(path) if path is not None else None,
        manifest_hash=resource.manifest_hash,
        fields=fields,
        folder=folder,
        secrets=secrets,
        live=live_names(type(resource)),
    )


@functools.cache
def live_names(cls: type[XResource]) -> frozenset[str]:
    """A type's live fields by name and by alias (manifests use aliases: ``connect``)."""
    names = set(cls.live_fields())
    for name in list(names):
        alias = cls.model_fields[name].alias
        if alias:
            names.add(alias)
    return frozenset(names)
