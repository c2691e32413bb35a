"""From manifest files to validated (unconnected) resources, with every problem located."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xresource.errors import ManifestError, Problem, UnknownResourceTypeError
from xresource.factory import PluginLoadError, ResourceFactory
from xresource.manifests.document import Document, format_path
from xresource.manifests.paths import path_problems, unknown_scheme_problems
from xresource.manifests.scan import iter_manifest_files
from xresource.manifests.toml_reader import read_toml
from xresource.manifests.yaml_reader import read_yaml
from xresource.resource import NAME_PATTERN, ManifestOrigin, XResource
from xresource.safe_files import FilePolicy
from xresource.secrets import suggested_reference
from xresource.settings import Settings, default_settings


@dataclass
class LoadResult:
    """Everything found under the given paths."""

    resources: dict[str, XResource] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    documents: dict[str, Document] = field(default_factory=dict)  # by resource name
    names_by_file: dict[Path, list[str]] = field(default_factory=dict)
    file_hashes: dict[Path, str] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each valid resource's fields as written (with settings defaults), by name."""
    held: list[Path] = field(default_factory=list)
    """Files the reader held back (still being written); not read this time."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def problems_by_file(self) -> dict[Path, list[Problem]]:
        out: dict[Path, list[Problem]] = {}
        for problem in self.problems:
            out.setdefault(Path(problem.file), []).append(problem)
        return out

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ManifestError(self.problems)


ParseCache = dict[tuple[Path, str], tuple[list[Document], list[Problem]]]
"""(file, content hash) -> what parsing it gave; lets a reload skip files whose bytes did not change."""


def read_documents(
    file: Path, max_bytes: int, cache: ParseCache | None = None
) -> tuple[list[Document], list[Problem], str]:
    """Parse one manifest file; returns documents, problems and the content hash.

    With ``cache``, a file whose content hash is in it is not parsed again (its
    documents are shared, so validation must not change them; it copies).
    """
    raw, problem, _ = read_raw(file, max_bytes)
    if raw is None:
        return [], [problem] if problem is not None else [], ""
    digest = hashlib.sha256(raw).hexdigest()
    docs, problems = parse_raw(file, raw, digest, cache)
    return docs, problems, digest


def read_raw(file: Path | str, max_bytes: int) -> tuple[bytes | None, Problem | None, os.stat_result | None]:
    """The bytes of a manifest file, or the problem reading it; also its ``stat`` once read.

    One open, non-blocking (a FIFO behind a link cannot hang the read), the type and
    size checked on the open descriptor; the returned ``stat`` is taken on that
    descriptor after reading, so a caller can tell whether the file changed meanwhile.
    """
    try:
        fd = os.open(file, _OPEN_FLAGS)
    except OSError as exc:
        return None, _cannot_read(file, exc), None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, Problem(str(file), None, None, "cannot read file: not a regular file"), None
        if info.st_size > max_bytes:
            return None, _too_large(file, info.st_size, max_bytes), None
        # One read asks for a byte more than the size: a short read is the end of a regular
        # file. A file that grew meanwhile is read on, in chunks, never past the limit.
        chunks = []
        total = 0
        want = min(info.st_size, max_bytes) + 1
        while True:
            chunk = os.read(fd, want)
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                return None, _too_large(file, total, max_bytes), None
            if len(chunk) < want:
                break
            want = min(_CHUNK, max_bytes + 1 - total)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks), None, os.fstat(fd)
    except OSError as exc:
        return None, _cannot_read(file, exc), None
    finally:
        os.close(fd)


_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
)


_CHUNK = 64 * 1024


def _cannot_read(file: Path | str, exc: OSError) -> Problem:
    return Problem(str(file), None, None, f"cannot read file: {exc.strerror or exc}")


def _too_large(file: Path | str, size: int, max_bytes: int) -> Problem:
    return Problem(str(file), None, None, f"file is {size} bytes; the limit is {max_bytes}")


def parse_raw(
    file: Path, raw: bytes, digest: str, cache: ParseCache | None = None
) -> tuple[list[Document], list[Problem]]:
    """Parse the bytes of a manifest file (``digest``: their hash, the cache's key)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [Problem(str(file), None, None, f"file is not UTF-8 text ({exc.reason})")]
    if cache is not None and (hit := cache.get((file, digest))) is not None:
        return hit
    reader = read_toml if file.suffix.lower() == ".toml" else read_yaml
    docs, problems = reader(file, text)
    if cache is not None:
        cache[(file, digest)] = (docs, problems)
    return docs, problems


@dataclass
class FileLoad:
    """What one manifest file gave: its valid resources and every problem, located."""

    file: Path
    digest: str
    resources: list[tuple[XResource, Document, dict[str, Any]]] = field(default_factory=list)
    """Each valid resource with its document and its fields as written (with settings defaults)."""
    names: list[tuple[str, Document]] = field(default_factory=list)
    """Every name the file declares, valid or not, with its document."""
    problems: list[Problem] = field(default_factory=list)
    references: bool = True
    """False when the file's text cannot hold a ``${...}`` reference (nor an escape writing one)."""


FileLoader = Callable[[Path], "FileLoad | None"]
"""Reads one file for :func:`load_manifests`; ``None`` holds the file back (not read this time)."""


def load_file(file: Path, settings: Settings, parse_cache: ParseCache | None = None) -> FileLoad:
    """Read, parse and validate one manifest file; any failure is a problem of this file."""
    try:
        docs, problems, digest = read_documents(file, settings.registry.max_manifest_bytes, parse_cache)
    except Exception as exc:  # noqa: BLE001 - one file's trouble never fails the others
        return FileLoad(file, "", problems=[_unexpected(file, None, exc)])
    return validate_documents(file, digest, docs, problems, settings)


def load_raw(file: Path, raw: bytes, digest: str, settings: Settings) -> FileLoad:
    """Parse and validate the bytes read from ``file`` (``digest``: their hash)."""
    try:
        docs, problems = parse_raw(file, raw, digest)
    except Exception as exc:  # noqa: BLE001 - one file's trouble never fails the others
        return FileLoad(file, "", problems=[_unexpected(file, None, exc)])
    # A reference is written "${...}"; an escape ("\x24{") could write one without those bytes.
    references = b"${" in raw or b"\\" in raw
    return validate_documents(file, digest, docs, problems, settings, references=references)


def validate_documents(
    file: Path,
    digest: str,
    docs: list[Document],
    problems: list[Problem],
    settings: Settings,
    *,
    references: bool = True,
) -> FileLoad:
    """Validate a file's parsed documents; any failure is a problem of this file."""
    loaded = FileLoad(file, digest, problems=list(problems), references=references)
    for doc in docs:
        try:
            resource, doc_problems, fields = _validate(doc, settings, references=references)
        except Exception as exc:  # noqa: BLE001 - a validator or plugin bug stays this file's problem
            resource, doc_problems, fields = None, [_unexpected(file, doc.line, exc)], {}
        loaded.problems.extend(doc_problems)
        name = doc.data.get("name") if isinstance(doc.data, dict) else None
        if isinstance(name, str):
            loaded.names.append((name, doc))
        if resource is not None:
            loaded.resources.append((resource, doc, fields))
    return loaded


def _unexpected(file: Path, line: int | None, exc: BaseException) -> Problem:
    # The exception's text may quote the file (or worse); its type says enough to act on.
    return Problem(
        str(file),
        line,
        None,
        f"this file could not be read ({type(exc).__name__}); its resources keep their last good version",
        code="internal",
    )


def load_manifests(
    paths: Path | str | Iterable[Path | str],
    settings: Settings | None = None,
    *,
    parse_cache: ParseCache | None = None,
    loader: FileLoader | None = None,
) -> LoadResult:
    """Read and validate every manifest under ``paths`` (files or folders).

    ``parse_cache`` (kept by the live registry between reloads) skips parsing
    files whose bytes are unchanged; every file is still read and hashed.
    ``loader`` replaces :func:`load_file` (the live registry holds back files
    still being written, and reuses what it read from files that did not change).
    """
    settings = settings or default_settings()
    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    result = LoadResult()
    for root in roots:
        if not root.exists():
            result.problems.append(Problem(str(root), None, None, "no such file or directory"))
    read = loader or (lambda file: load_file(file, settings, parse_cache))
    first_seen: dict[str, Document] = {}
    for file in iter_manifest_files(r for r in roots if r.exists()):
        loaded = read(file)
        if loaded is not None and loaded.problems and not os.path.lexists(file):
            continue  # deleted between the listing and the read: as if it had not been listed
        result.files.append(file)
        if loaded is None:
            result.held.append(file)
            continue
        result.file_hashes[file] = loaded.digest
        result.problems.extend(loaded.problems)
        result.names_by_file[file] = [name for name, _ in loaded.names]
        duplicates = set()
        for name, doc in loaded.names:
            if name in first_seen:
                result.problems.extend(_duplicate(name, doc, first_seen[name]))
                result.resources.pop(name, None)
                duplicates.add(id(doc))
            else:
                first_seen[name] = doc
        for resource, doc, fields in loaded.resources:
            if id(doc) not in duplicates:
                result.resources[resource.name] = resource
                result.documents[resource.name] = doc
                result.fields[resource.name] = fields
    return result


def _duplicate(name: str, doc: Document, other: Document) -> list[Problem]:
    """``name`` declared at ``doc`` after ``other``: a problem of each of the two places."""
    line, col = doc.mark_for(("name",))
    oline, ocol = other.mark_for(("name",))
    return [
        Problem(
            str(doc.file),
            line,
            col,
            f"duplicate name {name!r}; also defined at {other.file}:{oline}",
            resource=name,
            field="name",
            code="duplicate",
        ),
        Problem(
            str(other.file),
            oline,
            ocol,
            f"duplicate name {name!r}; also defined at {doc.file}:{line}",
            resource=name,
            field="name",
            code="duplicate",
        ),
    ]


def validate_document(doc: Document, settings: Settings) -> tuple[XResource | None, list[Problem]]:
    """Validate one document against its type's model; never raises for bad input."""
    resource, problems, _ = _validate(doc, settings)
    return resource, problems


def _validate(
    doc: Document, settings: Settings, *, references: bool = True
) -> tuple[XResource | None, list[Problem], dict[str, Any]]:
    """Validate one document; also returns its fields as written (with settings defaults).

    ``references=False``: the file's text holds neither ``${`` nor an escape that could write
    one, so no value can be a reference and the walks looking for them are skipped.
    """
    data = doc.data
    file = str(doc.file)
    if not isinstance(data, dict):
        kind = type(data).__name__
        return (
            None,
            [Problem(file, doc.line, doc.column, f"a manifest must be a mapping of fields, got {kind}")],
            {},
        )
    # A name is shown in problems only once it is a valid name (never a line break or a command).
    name = data.get("name") if isinstance(data.get("name"), str) and _valid_name(data["name"]) else None
    type_name = data.get("type")
    if type_name is None:
        line, col = doc.line, doc.column
        return (
            None,
            [Problem(file, line, col, "required field 'type' is missing", name, "type", "missing")],
            {},
        )
    if not isinstance(type_name, str):
        line, col = doc.mark_for(("type",))
        return None, [Problem(file, line, col, "'type' must be a string", name, "type")], {}
    try:
        resource_class = ResourceFactory.get_class(type_name)
    except UnknownResourceTypeError as exc:
        line, col = doc.mark_for(("type",))
        close = difflib.get_close_matches(type_name, exc.known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known types: {', '.join(exc.known)}"
        return (
            None,
            [Problem(file, line, col, f"unknown resource type {type_name!r}{hint}", name, "type", "type")],
            {},
        )
    except PluginLoadError as exc:
        line, col = doc.mark_for(("type",))
        return None, [Problem(file, line, col, str(exc), name, "type", "plugin")], {}
    # "$schema" declares a schema for editors and `validate`; it is not a field.
    merged = {**settings.defaults_for(type_name), **{k: v for k, v in data.items() if k != "$schema"}}
    scheme_problems = unknown_scheme_problems(doc, name) if references else []
    folder, folder_text = _folder_of(doc.file)
    try:
        resource = resource_class.model_validate(merged, context={"base_dir": folder})
    except ValidationError as exc:
        problems = [_problem_from_error(doc, name, err, resource_class) for err in exc.errors()]
        reported = {(p.line, p.message) for p in problems}
        return None, problems + [p for p in scheme_problems if (p.line, p.message) not in reported], {}
    if scheme_problems:
        return None, scheme_problems, {}
    policy = FilePolicy.from_settings(settings.registry)
    path_issues = path_problems(doc, resource, policy, references=references)
    if path_issues:
        return None, path_issues, {}
    fields_hash = manifest_hash(merged)
    resource.bind_manifest(
        ManifestOrigin(doc.file, doc.line, fields_hash, _fingerprint(folder_text, fields_hash))
    )
    resource.bind_file_policy(policy)
    return resource, [], merged


def _valid_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


_NAME_RE = re.compile(NAME_PATTERN)


def _folder_of(file: Path) -> tuple[Path, str]:
    """A manifest's folder (what relative paths resolve against) and its absolute spelling."""
    folder = os.path.dirname(file)
    if folder.startswith("/"):
        return _absolute_folder_of(folder)
    return file.parent, str(file.parent.absolute())  # depends on the working folder: not cached


@functools.lru_cache(maxsize=1024)
def _absolute_folder_of(folder: str) -> tuple[Path, str]:
    path = Path(folder)
    return path, str(path)


def manifest_hash(merged: dict[str, Any]) -> str:
    """Hash of the fields as written (with settings defaults): comparable across checkouts."""
    return hashlib.sha256(json.dumps(merged, sort_keys=True, default=str).encode()).hexdigest()


def _problem_from_error(
    doc: Document, name: str | None, err: Any, resource_class: type[XResource]
) -> Problem:
    loc = doc.normalize(tuple(err["loc"]))
    # A literal secret deep in an options map: point at its key, not at the map.
    loc = (*loc, *((err.get("ctx") or {}).get("key_path") or ()))
    if err["type"] in ("extra_forbidden", "missing") and tuple(err["loc"])[-1:] != loc[-1:]:
        loc = (*loc, err["loc"][-1])
    kind = err["type"]
    line, col = doc.mark_for(loc, value=kind not in ("extra_forbidden", "missing"))
    field_path = format_path(loc) or None
    message = err["msg"]
    if kind == "extra_forbidden":
        known = [f.alias or n for n, f in resource_class.model_fields.items()]
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
    elif kind == "missing":
        message = "required field is missing"
        line, col = doc.line, doc.column
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        message = (
            f"invalid name: must match {NAME_PATTERN} (lower case, starts with a letter, at most 63 chars)"
        )
    elif "written literally" in message:
        message = (
            f"literal secret; write a reference instead, e.g. "
            f"{loc[-1]}: {suggested_reference(name, str(loc[-1]))}"
        )
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return Problem(str(doc.file), line, col, message, name, field_path, kind)


def _fingerprint(folder: str, fields_hash: str) -> str:
    """What decides "changed" on reload: the fields and the folder relative paths resolve against.

    Loading reads no secret (``validate``, ``ls`` and ``plan`` must not): the live
    registry adds the content of referenced secret files itself, read through
    ``xresource.safe_files``, to notice a rotated secret.
    """
    digest = hashlib.sha256()
    digest.update(folder.encode())
    digest.update(fields_hash.encode())
    return digest.hexdigest()
