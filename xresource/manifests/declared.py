"""Schemas a manifest declares for itself: the editor's modeline or a ``$schema`` key.

``# yaml-language-server: $schema=...`` tells the editor which schema to use;
honouring it here means one declaration serves editor and CI. Local paths
resolve against the manifest's folder; a declared schema identical to the
built-in one is skipped (the models already checked the same rules, faster).
Remote URLs are not fetched (CI machines are often offline); they are ignored.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests.document import Document, format_path
from xresource.manifests.loader import LoadResult


def declared_schema_ref(doc: Document) -> str | None:
    if isinstance(doc.data, dict) and isinstance(doc.data.get("$schema"), str):
        return str(doc.data["$schema"])
    return doc.declared_schema


def check_declared_schemas(result: LoadResult) -> list[Problem]:
    """Validate each valid document against the schema it declares (if local and different)."""
    problems: list[Problem] = []
    for name, doc in result.documents.items():
        ref = declared_schema_ref(doc)
        if not ref or "://" in ref:
            continue
        path = (doc.file.parent / ref).resolve()
        schema = _load_schema(path)
        if isinstance(schema, str):
            line, col = doc.line, doc.column
            problems.append(Problem(str(doc.file), line, col, schema, name, "$schema", "declared-schema"))
            continue
        if schema is None:
            continue
        data = {k: v for k, v in doc.data.items() if k != "$schema"}
        for error in schema.iter_errors(data):
            loc = tuple(error.absolute_path)
            line, col = doc.mark_for(loc)
            problems.append(
                Problem(
                    str(doc.file),
                    line,
                    col,
                    f"{error.message} (declared schema {ref})",
                    name,
                    format_path(loc) or None,
                    "declared-schema",
                )
            )
    return problems


@cache
def _builtin_texts() -> frozenset[str]:
    from xresource.errors import XResourceError
    from xresource.schema import all_schemas

    try:
        texts = all_schemas().values()
    except XResourceError:  # a broken plugin: compare against nothing, validate everything declared
        return frozenset()
    return frozenset(json.dumps(json.loads(t), sort_keys=True) for t in texts)


@cache
def _load_schema(path: Path) -> Any:
    """A validator for ``path``; None to skip it; a str describing why it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
        schema = json.loads(text)
    except OSError:
        return f"declared schema {str(path)!r} cannot be read"
    except ValueError as exc:
        return f"declared schema {str(path)!r} is not valid JSON: {exc}"
    if json.dumps(schema, sort_keys=True) in _builtin_texts():
        return None
    try:
        import jsonschema
    except ImportError:
        return None
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"declared schema {str(path)!r} is not a valid JSON Schema: {exc.message}"
    return validator_class(schema)
