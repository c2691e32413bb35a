"""Environments: overlay folders that change the base folder's manifests, field by field.

``Registry(["resources.d", "overlays/prod"])`` (and ``--overlay`` on every command) reads
the base folder as usual, then each overlay folder in order. An overlay document names a
resource and the fields it changes (docs/environments.md):

- a scalar or a list replaces the value beneath it; a mapping (``headers``, ``options``,
  ``producer_config``) is merged key by key, recursively; ``null`` removes the key, so
  the field takes its default;
- a document with a ``type`` may define a new resource; if it names an existing resource
  with another ``type``, it replaces that resource whole (fields of one type mean nothing
  to another);
- a document without ``type`` for a name no earlier folder defines is an error, located at
  the overlay file and line;
- relative paths in an overlay (``file_path``, ``json_schema``, ``ca_file``) resolve
  against the overlay file's folder.

The merged document keeps where each field was written (:class:`Layered`), so a problem in
a field an overlay set names the overlay file and line, and ``ls`` and ``plan`` can say
where every field came from.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, Mark, format_path
from xresource.manifests.inline import rebase_paths
from xresource.manifests.loader import (
    LoadResult,
    ParseCache,
    _duplicate,
    _validate,
    load_manifests,
    read_documents,
)
from xresource.manifests.scan import iter_manifest_files
from xresource.resource import NAME_PATTERN
from xresource.settings import Settings

_SKIPPED_KEYS = ("name", "$schema")


@dataclass(slots=True)
class Layered:
    """A resource's document as the layers made it: data, marks, and the file of each field."""

    doc: Document
    sources: dict[FieldPath, Path] = field(default_factory=dict)
    """Where a field (and what is below it) was written, when not in ``doc.file``."""

    def file_of(self, path: FieldPath) -> Path:
        while path:
            found = self.sources.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.doc.file


@dataclass
class LayeredLoad(LoadResult):
    """A :class:`LoadResult` whose documents may have been changed by overlays."""

    layered: dict[str, Layered] = field(default_factory=dict)
    """Resources an overlay touched, by name (the others come from one file each)."""


def load_layers(
    paths: Iterable[Path],
    overlays: Sequence[Path],
    settings: Settings,
    *,
    parse_cache: ParseCache | None = None,
) -> LoadResult:
    """``load_manifests(paths)``, then each overlay folder applied in order (the commands' view)."""
    base = load_manifests(list(paths), settings, parse_cache=parse_cache)
    if not overlays:
        return base
    return OverlayReader(overlays, settings, parse_cache=parse_cache).apply(base, False)[0]


def field_origins(result: LoadResult, name: str) -> dict[str, str]:
    """``field -> "file:line"`` for each field of ``name`` as written (nested keys an overlay set too)."""
    doc = result.documents.get(name)
    if doc is None or not isinstance(doc.data, dict):
        return {}
    layered = result.layered.get(name) if isinstance(result, LayeredLoad) else None
    origins: dict[str, str] = {}

    def where(path: FieldPath) -> str:
        file = layered.file_of(path) if layered is not None else doc.file
        line = doc.marks.get(path, (None, None))[0]
        return f"{file}:{line}" if line is not None else str(file)

    for key, value in doc.data.items():
        if key == "$schema":
            continue
        origins[key] = where((key,))
        if layered is not None and isinstance(value, dict):
            for sub in value:
                if layered.file_of((key, sub)) != layered.file_of((key,)):
                    origins[format_path((key, sub))] = where((key, sub))
    return origins


class OverlayReader:
    """Applies overlay folders to the base folder's read; remembers what each file overrode.

    The memory matters to the live registry: an overlay file that breaks (or is emptied)
    keeps what it overrode running as it is, instead of letting the base version through.
    """

    def __init__(
        self, folders: Sequence[Path], settings: Settings, *, parse_cache: ParseCache | None = None
    ) -> None:
        self.folders = tuple(folders)
        self.settings = settings
        self._parse_cache: ParseCache = parse_cache if parse_cache is not None else {}
        self._last_names: dict[Path, list[str]] = {}

    def apply(self, base: LoadResult, settle: bool) -> tuple[LoadResult, float]:
        """The base read with every overlay applied, and seconds until a held-back file settles."""
        result = LayeredLoad(
            resources=dict(base.resources),
            problems=list(base.problems),
            files=list(base.files),
            documents=dict(base.documents),
            names_by_file=dict(base.names_by_file),
            file_hashes=dict(base.file_hashes),
            fields=dict(base.fields),
            held=list(base.held),
        )
        view = {name: Layered(doc) for name, doc in base.documents.items()}
        declared = {n for names in base.names_by_file.values() for n in names}
        touched: dict[str, None] = {}
        settles_in = 0.0
        for folder in self.folders:
            if not folder.exists():
                result.problems.append(Problem(str(folder), None, None, "no such file or directory"))
                continue
            seen: dict[str, Document] = {}
            for file in iter_manifest_files([folder]):
                wait = self._unsettled(file) if settle else 0.0
                if wait > 0:
                    settles_in = max(settles_in, wait)
                    result.files.append(file)
                    result.held.append(file)
                    result.names_by_file[file] = list(self._last_names.get(file, []))
                    continue
                self._apply_file(file, result, view, declared, seen, touched)
        present = set(result.files)
        for file in [f for f in self._last_names if f not in present]:
            del self._last_names[file]
        for name in touched:
            self._validate(name, view[name], result)
        return result, settles_in

    def _unsettled(self, file: Path) -> float:
        window = self.settings.registry.settle_ms / 1000
        try:
            age = time.time() - file.stat().st_mtime
        except OSError:
            return 0.0  # the read reports it
        return max(window - age, 0.0) if age < window else 0.0

    def _apply_file(
        self,
        file: Path,
        result: LayeredLoad,
        view: dict[str, Layered],
        declared: set[str],
        seen: dict[str, Document],
        touched: dict[str, None],
    ) -> None:
        docs, problems, digest = read_documents(
            file, self.settings.registry.max_manifest_bytes, self._parse_cache
        )
        result.files.append(file)
        result.file_hashes[file] = digest
        problems = list(problems)
        names: list[str] = []
        for doc in docs:
            name = _name_of(doc, problems)
            if name is None:
                continue
            names.append(name)
            if name in seen:
                problems.extend(_duplicate(name, doc, seen[name]))
                continue
            seen[name] = doc
            data: dict[str, Any] = doc.data
            current = view.get(name)
            if current is not None and data.get("type") in (None, current.doc.data.get("type")):
                if name not in touched:  # the base document may be shared (parse cache): copy it
                    current = view[name] = Layered(_copy(current.doc), dict(current.sources))
                merge(current, doc)
            elif current is not None or "type" in data:
                view[name] = Layered(_copy(doc))  # a full manifest: new, or of another type
            elif name in declared or result.held:
                continue  # its base document is invalid (reported there) or not read yet
            else:
                problems.append(_unknown_name(doc, name))
                continue
            touched[name] = None
        last = self._last_names.get(file, [])
        if not docs and not problems and last:
            problems.append(
                Problem(
                    str(file), None, None,
                    f"overrides nothing now (it overrode {', '.join(last)}); to drop its overrides "
                    "on purpose, delete the file; until then what it overrode keeps running",
                    code="emptied",
                )
            )  # fmt: skip
        if problems:
            names = list(dict.fromkeys([*names, *last]))  # all of them stay as they run
        else:
            self._last_names[file] = names
        result.names_by_file[file] = names
        result.problems.extend(problems)

    def _validate(self, name: str, layered: Layered, result: LayeredLoad) -> None:
        resource, problems, fields = _validate(layered.doc, self.settings)
        result.problems.extend(_relocated(p, layered) for p in problems)
        result.resources.pop(name, None)
        result.documents[name] = layered.doc
        result.layered[name] = layered
        if resource is not None:
            result.resources[name] = resource
            result.fields[name] = fields
        else:
            result.fields.pop(name, None)


def merge(target: Layered, patch: Document) -> None:
    """Apply ``patch`` (an overlay document) to ``target`` in place; see the module docstring."""
    data = copy.deepcopy(patch.data)
    base_folder = target.doc.file.parent
    if patch.file.parent != base_folder:
        rebase_paths(data, patch.file.parent, relative_to=base_folder)
    for key, value in data.items():
        if key not in _SKIPPED_KEYS:
            _merge_value(target, target.doc.data, (key,), value, patch)


def _merge_value(target: Layered, node: dict[str, Any], path: FieldPath, value: Any, patch: Document) -> None:
    key = str(path[-1])
    if value is None:
        node.pop(key, None)
        _forget(target, path)
        return
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for sub, item in value.items():
            _merge_value(target, node[key], (*path, sub), item, patch)
        return
    node[key] = value
    _forget(target, path)
    target.sources[path] = patch.file
    for marks, source in ((target.doc.marks, patch.marks), (target.doc.value_marks, patch.value_marks)):
        marks.update({p: m for p, m in source.items() if p[: len(path)] == path})


def _forget(target: Layered, path: FieldPath) -> None:
    """Drop what was known about ``path`` and everything below it."""
    size = len(path)
    for table in (target.doc.marks, target.doc.value_marks, target.sources):
        for known in [p for p in table if p[:size] == path]:
            del table[known]


def _copy(doc: Document) -> Document:
    """A document the merge may change (the parse cache shares the original)."""
    marks: dict[FieldPath, Mark] = dict(doc.marks)
    return dataclasses.replace(
        doc, data=copy.deepcopy(doc.data), marks=marks, value_marks=dict(doc.value_marks)
    )


def _name_of(doc: Document, problems: list[Problem]) -> str | None:
    data = doc.data
    if not isinstance(data, dict):
        problems.append(
            Problem(
                str(doc.file),
                doc.line,
                doc.column,
                f"a manifest must be a mapping of fields, got {type(data).__name__}",
            )
        )
        return None
    name = data.get("name")
    if not isinstance(name, str) or re.fullmatch(NAME_PATTERN, name) is None:
        line, column = doc.mark_for(("name",))
        message = (
            "an overlay document needs the `name` of the resource it changes (or defines)"
            if name is None
            else f"invalid name: must match {NAME_PATTERN}"
        )
        code = "missing" if name is None else "invalid"
        problems.append(Problem(str(doc.file), line, column, message, field="name", code=code))
        return None
    return name


def _unknown_name(doc: Document, name: str) -> Problem:
    line, column = doc.mark_for(("name",))
    return Problem(
        str(doc.file), line, column,
        f"overrides {name!r}, which no earlier folder defines; to define it here, "
        "write a full manifest (with `type` and every required field)",
        resource=name, field="name", code="unknown_override",
    )  # fmt: skip


def _relocated(problem: Problem, layered: Layered) -> Problem:
    """Point a problem at the file that wrote its field (the merged document has one file)."""
    if problem.field is None or problem.file != str(layered.doc.file) or not layered.sources:
        return problem
    best: tuple[int, Path] | None = None
    for path, file in layered.sources.items():
        written = format_path(path)
        covers = problem.field == written or problem.field.startswith((written + ".", written + "["))
        if covers and (best is None or len(written) > best[0]):
            best = (len(written), file)
    if best is None:
        return problem
    return dataclasses.replace(problem, file=str(best[1]))
