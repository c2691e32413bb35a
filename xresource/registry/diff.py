"""The reload diff: what runs against what the files say now, decided without any I/O.

Both the live registry and ``xresource plan`` call :func:`diff`, so a plan
shows exactly what a reload would do. Each side is a mapping from name to
:class:`Version` (the manifest's fields as written, never a resolved
secret); the desired side also says which files have problems and which are
still being written. The rules (docs/hot-reload.md):

- a file with any problem, or one still being written, changes nothing it
  defines: what runs from it keeps running (``rejected``, or held), nothing
  it defines is added, nothing that runs from it is removed;
- a file that defined running resources and now defines none (emptied,
  comment-only) is such a problem too: resources are removed on purpose by
  deleting the file, or by removing the entry while the file defines others;
- a new name is ``added``; a gone name is ``removed``;
- a changed name is ``updated`` when only fields its type marks live
  changed (same type, same folder, same secret files), else ``replaced``.

The result is plain data with a JSON shape (:meth:`Diff.as_dict`)::

    {"added": [Change], "replaced": [Change], "updated": [Change],
     "removed": [Change], "rejected": [Change], "unchanged": ["name", ...],
     "held": ["name", ...], "problems": [Problem]}
    Change  = {"name", "kind", "type", "path", "fields": [FieldChange],
               "secrets_rotated": ["${file:...}", ...], "errors": ["file:line: ...", ...]}
    FieldChange = {"field", "old", "new", "live"}
    Problem = {"file", "line", "column", "resource", "field", "message", "code"}

Values are shown as written: a secret appears only as its reference
(``${env:NAME}``); anything that looks like a literal credential is masked.
``old``/``new`` is ``null`` where the manifest does not set the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import JsonValue

from xresource.errors import Problem
from xresource.secrets import SECRET_KEY_RE

ChangeKind = Literal["added", "replaced", "updated", "removed", "rejected", "unchanged"]

FOLDER_FIELD = "@folder"
"""Pseudo-field of a change of the folder that relative paths resolve against."""

EMPTY_FILE_HINT = (
    "to remove its resources on purpose, delete the file (or remove an entry while the file "
    "still defines others); until then they keep running"
)


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a named resource, as far as deciding "changed" needs it."""

    name: str
    type: str
    path: str | None
    """The manifest file; matched against the desired side's files."""
    manifest_hash: str | None
    """Hash of ``fields``; equal hashes mean equal fields."""
    fields: Mapping[str, Any] | None = None
    """The fields as written (with settings defaults); ``None`` when unknown (only the hash is)."""
    folder: str | None = None
    """What relative paths resolve against; ``None``: not compared."""
    secrets: Mapping[str, str] | None = None
    """Digest of each referenced secret file's content by reference; ``None``: not compared."""
    live: frozenset[str] = frozenset()
    """Names (and aliases) of its type's live fields."""


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's change, with values as written (secrets as their references)."""

    field: str
    old: JsonValue
    new: JsonValue
    live: bool

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new, "live": self.live}

    def describe(self, limit: int | None = 80) -> str:
        """``field: old -> new`` with values as JSON, each cut to ``limit`` characters (None: whole)."""
        return f"{self.field}: {_short(self.old, limit)} -> {_short(self.new, limit)}"


@dataclass(frozen=True, slots=True)
class Change:
    """What a reload does (or refuses to do) to one name."""

    name: str
    kind: ChangeKind
    type: str | None
    path: str | None
    fields: tuple[FieldChange, ...] = ()
    secrets_rotated: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "path": self.path,
            "fields": [f.as_dict() for f in self.fields],
            "secrets_rotated": list(self.secrets_rotated),
            "errors": list(self.errors),
        }

    def describe_fields(self) -> str:
        """``"max_pool_size: 5 -> 10, secret ${file:/run/token} rotated"`` (empty when nothing to say)."""
        parts = [f.describe() for f in self.fields]
        parts += [f"secret {ref} rotated" for ref in self.secrets_rotated]
        return ", ".join(parts)


@dataclass(slots=True)
class Desired:
    """What the files say now."""

    versions: dict[str, Version]
    """Valid resources by name (none from a file with problems)."""
    problems: Sequence[Problem] = ()
    names_by_file: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Every file read -> the names it declares (also those of invalid documents)."""
    held_files: frozenset[str] = frozenset()
    """Files not applied yet (still being written): what runs from them stays as it is."""


@dataclass(slots=True)
class Diff:
    """The decision for every name, plus every problem found; see the module docstring."""

    changes: dict[str, Change] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    """Running names whose file is still being written (kept as they are, decided later)."""

    def of_kind(self, kind: ChangeKind) -> list[Change]:
        """The changes of one kind, by name (filtered first: most reloads change few names)."""
        return sorted((c for c in self.changes.values() if c.kind == kind), key=_by_name)

    def names(self, kind: ChangeKind) -> list[str]:
        return [c.name for c in self.of_kind(kind)]

    def problems_by_file(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for problem in self.problems:
            out.setdefault(problem.file, []).append(problem)
        return out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            kind: [c.as_dict() for c in self.of_kind(kind)]
            for kind in ("added", "replaced", "updated", "removed", "rejected")
        }
        data["unchanged"] = self.names("unchanged")
        data["held"] = sorted(self.held)
        data["problems"] = [problem_dict(p) for p in self.problems]
        return data


def _by_name(change: Change) -> str:
    return change.name


def diff(running: Mapping[str, Version], desired: Desired) -> Diff:
    """Decide, for every name running or desired, what a reload does. Pure: no I/O."""
    problems = list(desired.problems)
    defined: dict[str, list[str]] = {}
    for name, version in running.items():
        if version.path is not None:
            defined.setdefault(version.path, []).append(name)
    # A file that still exists but declares nothing now, while resources run from it.
    already = {p.file for p in problems}
    for file, names in desired.names_by_file.items():
        if not names and file in defined and file not in desired.held_files and file not in already:
            was = ", ".join(sorted(defined[file]))
            problems.append(
                Problem(
                    file,
                    None,
                    None,
                    f"defines no resources now (it defined {was}); {EMPTY_FILE_HINT}",
                    code="emptied",
                )
            )
    result = Diff(problems=problems)
    broken: dict[str, list[Problem]] = {}
    for problem in problems:
        broken.setdefault(problem.file, []).append(problem)

    frozen: dict[str, tuple[str, ...] | None] = {}  # name -> errors (None: held, not broken)
    for files, errors_of in ((desired.held_files, None), (broken.keys(), broken.get)):
        for file in files:
            errors = None if errors_of is None else tuple(str(p) for p in errors_of(file) or [])
            for name in [*defined.get(file, ()), *desired.names_by_file.get(file, ())]:
                if errors is not None or name not in frozen:
                    frozen[name] = _merge(frozen.get(name), errors)
    for name, errors in frozen.items():
        current = running.get(name)
        if current is None:
            continue  # a new name in a bad file: not added (its problems are listed)
        if errors is None:
            result.held.append(name)
            result.changes[name] = Change(name, "unchanged", current.type, current.path)
        else:
            result.changes[name] = Change(name, "rejected", current.type, current.path, errors=errors[:3])

    for name, new in desired.versions.items():
        if name in frozen:
            continue
        old = running.get(name)
        result.changes[name] = (
            _compare(old, new) if old is not None else Change(name, "added", new.type, new.path)
        )
    for name, old in running.items():
        if name not in result.changes:
            result.changes[name] = Change(name, "removed", old.type, old.path)
    return result


def _merge(known: tuple[str, ...] | None, more: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if known is None:
        return more
    return known + tuple(e for e in more or () if e not in known)


def _compare(old: Version, new: Version) -> Change:
    same_fields = old.manifest_hash is not None and old.manifest_hash == new.manifest_hash
    same_folder = old.folder is None or new.folder is None or old.folder == new.folder
    rotated = _rotated(old.secrets, new.secrets)
    if old.type == new.type and same_fields and same_folder and not rotated:
        return Change(new.name, "unchanged", new.type, new.path)
    changes = list(field_changes(old.fields, new.fields, new.live)) if old.type == new.type else []
    if old.type != new.type:
        changes = [FieldChange("type", old.type, new.type, live=False)]
    if not same_folder:
        changes.append(FieldChange(FOLDER_FIELD, old.folder, new.folder, live=False))
    cosmetic = (
        old.type == new.type
        and old.fields is not None
        and not rotated
        and bool(changes)
        and all(c.live for c in changes)
    )
    kind: ChangeKind = "updated" if cosmetic else "replaced"
    return Change(new.name, kind, new.type, new.path, tuple(changes), rotated)


def field_changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, live: frozenset[str] = frozenset()
) -> Iterable[FieldChange]:
    """Per-field changes between two manifests as written (values shown safely)."""
    if old is None or new is None:
        return
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before != after:
            yield FieldChange(key, shown(before, key), shown(after, key), key in live)


def _rotated(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> tuple[str, ...]:
    if old is None or new is None:
        return ()
    return tuple(sorted(ref for ref in set(old) & set(new) if old[ref] != new[ref]))


def shown(value: object, key: str = "") -> JsonValue:
    """A value as it may be printed: references kept, anything like a literal credential masked."""
    if isinstance(value, str):
        if key and SECRET_KEY_RE.search(key) and value and not _ONE_REFERENCE_RE.fullmatch(value):
            return "***"
        return mask_literal_password(value)
    if isinstance(value, Mapping):
        return {str(k): shown(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown(v, key) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


_USERINFO_RE = re.compile(r"(://[^/@:\s]*:)([^/@\s]+)@")
_QUERY_RE = re.compile(r"([?&;])([^=&#\s]+)=([^&#\s]*)")
_ONE_REFERENCE_RE = re.compile(r"\$\{(env|file):[^}]+\}")


def mask_literal_password(text: str) -> str:
    """Mask literal credentials in a URL (user-info password, secret-named query values).

    A value that is exactly one reference stays readable: it is what the manifest says.
    """

    def userinfo(match: re.Match[str]) -> str:
        secret = match.group(2)
        return match.group(0) if _ONE_REFERENCE_RE.fullmatch(secret) else f"{match.group(1)}***@"

    def query(match: re.Match[str]) -> str:
        key, value = match.group(2), match.group(3)
        if value and SECRET_KEY_RE.search(key) and not _ONE_REFERENCE_RE.fullmatch(value):
            return f"{match.group(1)}{key}=***"
        return match.group(0)

    return _QUERY_RE.sub(query, _USERINFO_RE.sub(userinfo, text))


def _short(value: JsonValue, limit: int | None) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "resource": problem.resource,
        "field": problem.field,
        "message": problem.message,
        "code": problem.code,
    }
