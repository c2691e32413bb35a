"""Manifests given in code (dicts, YAML or TOML text) instead of files, validated the same way.

Each manifest gets a pseudo file name, ``<manifest N>`` (1-based, in the order given), so
a problem reads ``<manifest 2>:4:1: user_db: max_pool_size: ...``: the line is the line of
the text as written (after ``textwrap.dedent``, which keeps line numbers). A dict has no
lines, so its problems name the field only. A YAML text may hold several documents.

Relative paths (``file_path``, ``json_schema``, ``ca_file``) resolve against ``base_dir``,
which is fixed when the manifests are read (a later ``chdir`` does not move them).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from xresource.errors import Problem
from xresource.manifests.document import Document
from xresource.manifests.loader import LoadResult, _validate, manifest_hash
from xresource.manifests.paths import PATH_FIELDS
from xresource.manifests.toml_reader import read_toml
from xresource.manifests.yaml_reader import read_yaml
from xresource.settings import Settings

InlineManifest = Mapping[str, Any] | str
"""One manifest given in code: a mapping of fields, or YAML (or TOML) text."""

TextFormat = Literal["yaml", "toml"]


def pseudo_file(index: int) -> Path:
    """The name problems and ``status().path`` give the ``index``-th manifest (1-based)."""
    return Path(f"<manifest {index}>")


def as_list(manifests: InlineManifest | Iterable[InlineManifest]) -> list[InlineManifest]:
    """One manifest or several; a lone string or mapping is one manifest, not an iterable of them."""
    if isinstance(manifests, str | Mapping):
        return [manifests]
    items = list(manifests)
    for index, item in enumerate(items, start=1):
        if not isinstance(item, str | Mapping):
            raise TypeError(
                f"manifest {index} is a {type(item).__name__}; give a mapping of fields or YAML/TOML text"
            )
    return items


def load_inline(
    manifests: Iterable[InlineManifest],
    settings: Settings,
    *,
    base_dir: Path,
    text_format: TextFormat = "yaml",
) -> LoadResult:
    """Parse and validate manifests given in code, as :func:`load_manifests` does files."""
    result = LoadResult()
    first_seen: dict[str, Document] = {}
    lineless: set[str] = set()  # dicts: their problems name the field, not a line
    for index, manifest in enumerate(manifests, start=1):
        file = pseudo_file(index)
        docs, problems = _documents(file, manifest, text_format, base_dir)
        if not isinstance(manifest, str):
            lineless.add(str(file))
        result.files.append(file)
        result.file_hashes[file] = manifest_hash({"manifest": manifest})
        found: list[Problem] = list(problems)
        names: list[str] = []
        for doc in docs:
            resource, doc_problems, fields = _validate(doc, settings)
            found.extend(doc_problems)
            name = doc.data.get("name") if isinstance(doc.data, dict) else None
            if isinstance(name, str):
                names.append(name)
                if name in first_seen:
                    found.append(_duplicate(name, doc, first_seen[name]))
                    result.resources.pop(name, None)
                    continue
                first_seen[name] = doc
            if resource is not None:
                result.resources[resource.name] = resource
                result.documents[resource.name] = doc
                result.fields[resource.name] = fields
        result.names_by_file[file] = names
        result.problems.extend(found)
    result.problems = [_without_lines(p) if p.file in lineless else p for p in result.problems]
    return result


def _documents(
    file: Path, manifest: InlineManifest, text_format: TextFormat, base_dir: Path
) -> tuple[list[Document], list[Problem]]:
    if isinstance(manifest, str):
        text = textwrap.dedent(manifest)
        docs, problems = (read_toml if text_format == "toml" else read_yaml)(file, text)
    else:
        docs, problems = [Document(file, 0, copy.deepcopy(dict(manifest)))], []
    for doc in docs:
        if isinstance(doc.data, dict):
            rebase_paths(doc.data, base_dir)
    return docs, problems


def rebase_paths(data: dict[str, Any], folder: Path, *, relative_to: Path | None = None) -> None:
    """Make relative path fields of ``data`` (written in ``folder``) independent of where it is read.

    Without ``relative_to`` they become absolute; with it, relative to that folder (what an
    overlay does, so fields as written stay comparable across checkouts).
    """
    for key in PATH_FIELDS:
        value = data.get(key)
        if not isinstance(value, str) or not value or "${" in value or value.startswith("~"):
            continue
        path = Path(value)
        if path.is_absolute():
            continue
        target = Path(os.path.normpath(folder / path))
        data[key] = str(target) if relative_to is None else os.path.relpath(target, relative_to)


def _duplicate(name: str, doc: Document, first: Document) -> Problem:
    line, column = doc.mark_for(("name",))
    return Problem(
        str(doc.file), line, column, f"duplicate name {name!r}; {first.file} defines it already",
        resource=name, field="name", code="duplicate",
    )  # fmt: skip


def _without_lines(problem: Problem) -> Problem:
    return dataclasses.replace(problem, line=None, column=None)
