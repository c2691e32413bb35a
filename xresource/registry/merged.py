"""The folder's files merged by name, kept up to date one file at a time.

:func:`load_manifests` merges every file on every call; the live registry reads
again only the files that changed, so it keeps the merge and updates it per
file: what each file declares, which names are declared twice (then neither is
valid, and both files say so), each valid name's resource, fields and
:class:`Version`. A snapshot copies the maps (C-level dict copies), so a reload
of one file costs that file, not the folder.

The rules are :func:`load_manifests`'s: a file with problems still contributes
its valid documents (the diff freezes what a broken file defines); a file held
back (still being written) contributes nothing until it is read; a name
declared more than once is valid nowhere, and every declaration after the first
(in folder order) is a problem of both files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests import LoadResult
from xresource.manifests.document import Document
from xresource.manifests.loader import FileLoad, _duplicate
from xresource.registry.diff import Version
from xresource.resource import XResource


class Merged:
    """Every file's last load, merged by name."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        """Every listed file (read or held back) -> its ``Path``."""
        self.loads: dict[str, FileLoad] = {}
        """Files read -> what they gave."""
        self.held: dict[str, Path] = {}
        """Files held back (still being written): they contribute nothing this time."""
        self.declared: dict[str, list[str]] = {}
        """Name -> the files declaring it, once per declaration (valid or not)."""
        self.resources: dict[str, XResource] = {}
        self.documents: dict[str, Document] = {}
        self.fields: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, Version] = {}
        self.names_by_file: dict[str, list[str]] = {}
        self.names_by_path: dict[Path, list[str]] = {}
        self.file_hashes: dict[Path, str] = {}
        self.file_problems: dict[str, list[Problem]] = {}
        """Files with problems of their own -> those problems."""
        self.duplicates: dict[str, list[Problem]] = {}
        """Names declared more than once -> the problems that says."""
        self.folders: dict[str, int] = {}
        """The folders holding listed files -> how many."""
        self._absolute: dict[str, str] = {}  # a file's folder as written -> absolute

    # ---- updating -----------------------------------------------------------------------------

    def set_file(self, path: str, file: Path, load: FileLoad | None) -> set[str]:
        """Record what ``path`` gives now (``None``: held back); returns the names it may change."""
        old = self.loads.get(path)
        if load is old and (load is not None or path in self.held):
            return set()
        if path not in self.paths:
            self.paths[path] = file
            folder = os.path.dirname(path)
            self.folders[folder] = self.folders.get(folder, 0) + 1
        if load is None:
            self.loads.pop(path, None)
            self.held[path] = file
        else:
            self.loads[path] = load
            self.held.pop(path, None)
        return self._replace(path, file, old, load)

    def remove(self, path: str) -> set[str]:
        """``path`` is gone (deleted, ignored now, or no longer listed)."""
        file = self.paths.pop(path, None)
        if file is None:
            return set()
        folder = os.path.dirname(path)
        self.folders[folder] -= 1
        if not self.folders[folder]:
            del self.folders[folder]
        self.held.pop(path, None)
        return self._replace(path, file, self.loads.pop(path, None), None)

    def _replace(self, path: str, file: Path, old: FileLoad | None, new: FileLoad | None) -> set[str]:
        affected: set[str] = set()
        if old is not None:
            for name, _ in old.names:
                files = self.declared[name]
                files.remove(path)
                if not files:
                    del self.declared[name]
                affected.add(name)
        if new is not None:
            for name, _ in new.names:
                self.declared.setdefault(name, []).append(path)
                affected.add(name)
            names = [name for name, _ in new.names]
            self.names_by_file[path] = names
            self.names_by_path[file] = names
            self.file_hashes[file] = new.digest
            if new.problems:
                self.file_problems[path] = list(new.problems)
            else:
                self.file_problems.pop(path, None)
        else:
            self.names_by_file.pop(path, None)
            self.names_by_path.pop(file, None)
            self.file_hashes.pop(file, None)
            self.file_problems.pop(path, None)
        for name in affected:
            self._settle(name)
        return affected

    def _settle(self, name: str) -> None:
        """Decide what ``name`` is now, from the files declaring it."""
        files = self.declared.get(name)
        found: tuple[XResource, Document, dict[str, Any]] | None = None
        if files is not None and len(files) > 1:
            self.duplicates[name] = self._duplicate_problems(name, files)
        else:
            self.duplicates.pop(name, None)
            if files is not None:
                for candidate in self.loads[files[0]].resources:
                    if candidate[0].name == name:
                        found = candidate
                        break
        if found is None or files is None:
            for table in (self.resources, self.documents, self.fields, self.versions):
                table.pop(name, None)
            return
        resource, doc, fields = found
        if self.resources.get(name) is resource:
            return  # the same object as last time (the same load): so is its version
        self.resources[name] = resource
        self.documents[name] = doc
        self.fields[name] = fields
        origin = resource.manifest_origin
        self.versions[name] = Version(
            name=name,
            type=resource.type,
            path=str(origin.path) if origin is not None else None,
            manifest_hash=origin.manifest_hash if origin is not None else None,
            fields=fields,
            folder=self._folder(files[0]),
            secrets={},
            live=live_names(type(resource)),
        )  # what version_of gives, without asking the model for each part

    def _duplicate_problems(self, name: str, files: list[str]) -> list[Problem]:
        problems: list[Problem] = []
        first: Document | None = None
        for path in sorted(set(files), key=order_key):
            for declared, doc in self.loads[path].names:
                if declared != name:
                    continue
                if first is None:
                    first = doc
                else:
                    problems.extend(_duplicate(name, doc, first))
        return problems

    def _folder(self, path: str) -> str:
        folder = os.path.dirname(path)
        absolute = self._absolute.get(folder)
        if absolute is None:
            absolute = self._absolute[folder] = os.path.abspath(folder)
        return absolute

    # ---- reading ------------------------------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Every problem, file by file in folder order (a file's own first, then duplicates)."""
        by_file: dict[str, list[Problem]] = {f: list(ps) for f, ps in self.file_problems.items()}
        for name in sorted(self.duplicates):
            for problem in self.duplicates[name]:
                by_file.setdefault(problem.file, []).append(problem)
        return [p for f in sorted(by_file, key=order_key) for p in by_file[f]]

    def load_result(self, problems: list[Problem]) -> LoadResult:
        """A :class:`LoadResult` of the merge as it is now (copies: later updates do not show)."""
        return LoadResult(
            resources=dict(self.resources),
            problems=problems,
            files=list(self.paths.values()),
            documents=dict(self.documents),
            names_by_file=dict(self.names_by_path),
            file_hashes=dict(self.file_hashes),
            fields=dict(self.fields),
            held=list(self.held.values()),
        )

    def names_in(self, paths: Iterable[str]) -> set[str]:
        """The names the files at ``paths`` declare."""
        return {name for path in paths for name in self.names_by_file.get(path, ())}


def order_key(path: str) -> tuple[str, ...]:
    """Folder order: paths sorted by their parts, as the scan lists them."""
    return tuple(path.split("/"))


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
