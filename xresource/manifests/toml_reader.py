"""TOML manifests: one resource per file, with key positions found by a line scan.

``tomllib`` reports no positions for valid documents, so after parsing we scan
the text for table headers and ``key =`` lines to place field errors.

``tomllib`` parses nested arrays and inline tables recursively, so a value of a
few hundred brackets raises ``RecursionError``. Before parsing, a scan that
skips strings and comments measures the bracket nesting and refuses a file
nested deeper than YAML allows, at the line where it gets too deep; dotted keys
nest without brackets and are measured on the parsed data.
"""

from __future__ import annotations

import re
from pathlib import Path

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, Mark
from xresource.manifests.yaml_reader import MAX_DEPTH

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


# Strings and comments (skipped) or one bracket (counted). Multi-line strings come first.
_TOKEN_RE = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]',
    re.DOTALL,
)


def _too_deep(text: str) -> int | None:
    """The offset where bracket nesting first exceeds ``MAX_DEPTH``, or None."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None  # cannot nest that deep: skip the scan
    depth = 0
    for token in _TOKEN_RE.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def _data_depth(data: object) -> int:
    """Nesting of parsed data, without recursion (dotted keys nest without brackets)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def read_toml(file: Path, text: str) -> tuple[list[Document], list[Problem]]:
    text = text.removeprefix("\ufeff")  # a byte order mark, as some Windows editors write
    offset = _too_deep(text)
    if offset is not None:
        deep_line = text.count("\n", 0, offset) + 1
        deep_column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return [], [
            Problem(
                str(file), deep_line, deep_column, f"TOML nests deeper than {MAX_DEPTH} levels", code="toml"
            )
        ]
    import tomllib  # here: a folder of YAML files never pays for it

    try:
        data = tomllib.loads(text)
    except RecursionError:  # a nesting the scan did not see: still this file's problem
        return [], [Problem(str(file), 1, 1, f"TOML nests deeper than {MAX_DEPTH} levels", code="toml")]
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
    if _data_depth(data) > MAX_DEPTH:
        return [], [Problem(str(file), 1, 1, f"TOML nests deeper than {MAX_DEPTH} levels", code="toml")]
    return [Document(file, 0, data, 1, 1, _marks(text), declared_schema=None)], []
