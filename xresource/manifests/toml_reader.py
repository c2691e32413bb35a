"""TOML manifests: one resource per file, with key positions found by a line scan.

``tomllib`` reports no positions for valid documents, so after parsing we scan
the text for table headers and ``key =`` lines to place field errors.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, Mark

_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")
_HEADER_RE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^(\s*)((?:"[^"]*"|'[^']*'|[A-Za-z0-9_.\- ]+?))\s*=""")


def _split_key(raw: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', raw)
    return tuple(a or b or c for a, b, c in parts)


def _marks(text: str) -> dict[FieldPath, Mark]:
    marks: dict[FieldPath, Mark] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            table = _split_key(header.group(1))
            marks.setdefault(table, (number, line.index("[") + 1))
            continue
        key = _KEY_RE.match(line)
        if key:
            marks.setdefault((*table, *_split_key(key.group(2))), (number, len(key.group(1)) + 1))
    return marks


def read_toml(file: Path, text: str) -> tuple[list[Document], list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _POSITION_RE.search(message)
        line = column = None
        if found:
            line, column = int(found.group(1)), int(found.group(2))
            message = _POSITION_RE.sub("", message).strip()
        return [], [Problem(str(file), line, column, f"invalid TOML: {message}", code="toml")]
    if not data:
        return [], []
    return [Document(file, 0, data, 1, 1, _marks(text), declared_schema=None)], []
