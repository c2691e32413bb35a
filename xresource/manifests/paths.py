"""Files a manifest names, checked at load without reading any of them.

Loading must read no secret (``validate``, ``ls`` and ``plan`` run on CI machines
and in review), yet some mistakes and attacks are visible from the path alone:
a file outside ``[registry] allowed_roots``, or a ``${file:...}`` pointing at a
FIFO, a device or a socket. Those are reported here, located at the field; a
file that does not exist yet is fine (CI has no secrets mounted). Every open
later goes through ``xresource.safe_files``, which checks again at that moment.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, format_path, iter_strings
from xresource.safe_files import FilePolicy
from xresource.secrets import iter_references, unknown_scheme, unknown_scheme_message

PATH_FIELDS = ("file_path", "json_schema", "ca_file")
"""Fields that name a file the process opens (besides ``${file:...}`` references anywhere)."""


def named_paths(doc: Document, resource: Any, *, references: bool = True) -> Iterator[tuple[FieldPath, Path]]:
    """``(field path, file)`` for every file the manifest names, relative ones resolved.

    ``references=False``: the manifest holds no ``${...}`` (its loader checked the text), so
    the walk for ``${file:...}`` is skipped.
    """
    for field in _path_fields(resource.__class__):
        value = getattr(resource, field, None)
        if isinstance(value, Path):
            yield (field,), value
        elif isinstance(value, str) and value and "${" not in value:
            path = Path(value).expanduser()
            yield (field,), path if path.is_absolute() else doc.file.parent / path
    if references:
        yield from _file_references(doc.data, ())


@functools.cache
def _path_fields(cls: type[Any]) -> tuple[str, ...]:
    """The fields of ``PATH_FIELDS`` a model declares (asking a model for a missing one raises)."""
    declared = getattr(cls, "model_fields", None)
    return tuple(f for f in PATH_FIELDS if declared is None or f in declared)


def _file_references(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, Path]]:
    if isinstance(value, str):
        for kind, target in iter_references(value):
            if kind == "file":
                yield path, Path(target)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _file_references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _file_references(item, (*path, index))


def path_problems(
    doc: Document, resource: Any, policy: FilePolicy, *, references: bool = True
) -> list[Problem]:
    """Named files outside the allowed roots, or existing but not regular files; none is opened."""
    problems: list[Problem] = []
    name = getattr(resource, "name", None)
    for field, path in named_paths(doc, resource, references=references):
        why = policy.outside_roots(path) or _not_a_regular_file(path)
        if why is None:
            continue
        line, column = doc.mark_for(field, value=True)
        code = "allowed_roots" if "allowed roots" in why else "not_a_file"
        problems.append(
            Problem(str(doc.file), line, column, f"{path} {why}", name, format_path(field) or None, code)
        )
    return problems


def _not_a_regular_file(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode  # follows links; never opens, so a FIFO cannot block
    except (OSError, ValueError):
        return None  # missing (not mounted here) or unreadable: the registry says so at connect
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a device",
        stat.S_IFBLK: "a device",
        stat.S_IFSOCK: "a socket",
    }
    kind = "a folder" if stat.S_ISDIR(mode) else kinds.get(stat.S_IFMT(mode), "not a regular file")
    return f"is {kind}; only a regular file can be read"


def unknown_scheme_problems(doc: Document, name: str | None) -> list[Problem]:
    """``${vault:...}`` and other reference schemes we do not resolve, in any field.

    Written where a reference is not required, such a value would be used as text as it
    stands: never what the author meant.
    """
    problems: list[Problem] = []
    for path, value in iter_strings(doc.data, ()):
        scheme = unknown_scheme(value)
        if scheme is not None and path != ("$schema",):
            line, column = doc.mark_for(path, value=True)
            problems.append(
                Problem(
                    str(doc.file), line, column, unknown_scheme_message(scheme), name,
                    format_path(path) or None, "reference",
                )
            )  # fmt: skip
    return problems
