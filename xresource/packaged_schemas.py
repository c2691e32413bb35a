"""The generated JSON Schemas that ship inside the installed package.

One source of truth: the models generate the schemas (``xresource schema --out
schemas``), and the repository commits that output once, in ``schemas/``. The
wheel build copies that folder into the package as ``xresource/schemas/``
(``force-include`` in ``pyproject.toml``), so an installed xresource carries
the schemas of its own models. In an editable install from a source checkout
the package folder does not exist and the checkout's ``schemas/`` is used.

``validate`` compares a manifest's declared schema with these files instead of
generating schemas from the models (which costs seconds): a declared schema
that is one of ours adds nothing to what the models check. This module
imports nothing beyond the standard library, so it costs nothing at start-up.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
UNION_SCHEMA = "resource.schema.json"


@cache
def schema_dir() -> Path | None:
    """The folder holding the shipped schemas, or None when this install has none."""
    for candidate in (_PACKAGE / "schemas", _PACKAGE.parent / "schemas"):
        if (candidate / UNION_SCHEMA).is_file():
            return candidate
    return None


def union_schema() -> Path | None:
    """The shipped ``resource.schema.json`` (every type), for modelines."""
    folder = schema_dir()
    return folder / UNION_SCHEMA if folder is not None else None


def is_shipped_schema(path: Path, text: bytes) -> bool:
    """Whether ``text`` (read from ``path``) is one of the shipped schemas.

    Byte equality with the file of the same name is the fast path (a
    ``schemas/`` folder written by ``xresource schema --out`` of this version);
    otherwise the JSON is compared with every shipped schema, ignoring layout.
    """
    folder = schema_dir()
    if folder is None:
        return False
    same_name = folder / path.name
    if same_name.is_file() and same_name.read_bytes() == text:
        return True
    try:
        wanted = _canonical(text)
    except ValueError:
        return False
    return wanted in _shipped_canonical(folder)


def _canonical(text: bytes | str) -> str:
    return json.dumps(json.loads(text), sort_keys=True)


@cache
def _shipped_canonical(folder: Path) -> frozenset[str]:
    return frozenset(_canonical(p.read_bytes()) for p in sorted(folder.glob("*.schema.json")))
