"""One manifest document and where each of its fields sits in the file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Mark = tuple[int, int]  # 1-based line and column
FieldPath = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    """A parsed manifest: its data plus the line/column of the document and of each key."""

    file: Path
    index: int  # position in a multi-document YAML file, 0-based
    data: Any
    line: int = 1
    column: int = 1
    marks: dict[FieldPath, Mark] = field(default_factory=dict)  # where each key is
    value_marks: dict[FieldPath, Mark] = field(default_factory=dict)  # where each key's value is
    declared_schema: str | None = None  # from a "yaml-language-server: $schema=" modeline

    def normalize(self, path: FieldPath) -> FieldPath:
        """Drop segments that are not in the data (a union's tag that pydantic puts in ``loc``)."""
        out: list[str | int] = []
        node = self.data
        for part in path:
            if isinstance(node, dict) and part in node:  # noqa: SIM114 - separate so mypy narrows each
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            elif isinstance(node, dict | list):
                continue  # not in the data: skip it, the next segment may be
            out.append(part)
        return tuple(out)

    def mark_for(self, path: FieldPath, *, value: bool = False) -> Mark:
        """The closest known position of ``path`` (its value's, if asked), up to the document."""
        if value and path in self.value_marks:
            return self.value_marks[path]
        while path:
            found = self.marks.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return (self.line, self.column)


def format_path(path: FieldPath) -> str:
    """``("auth_params", "password")`` -> ``auth_params.password``; ``("tags", 0)`` -> ``tags[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def iter_strings(value: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, str]]:
    """Every string in ``value`` (nested mappings and lists included), with its field path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*path, index))
