"""Schemas a manifest declares for itself: the editor's modeline or a ``$schema`` key.

``# yaml-language-server: $schema=...`` tells the editor which schema to use;
honouring it here means one declaration serves editor and CI. Local paths
resolve against the manifest's folder; a declared schema identical to one
shipped in the package (``xresource.packaged_schemas``) is skipped: the models
already checked the same rules, faster.
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
from xresource.packaged_schemas import is_shipped_schema


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
def _load_schema(path: Path) -> Any:
    """A validator for ``path``; None to skip it; a str describing why it is unusable."""
    try:
        raw = path.read_bytes()
    except OSError:
        return f"declared schema {str(path)!r} cannot be read"
    if is_shipped_schema(path, raw):
        return None
    try:
        schema = json.loads(raw)
    except ValueError as exc:
        return f"declared schema {str(path)!r} is not valid JSON: {exc}"
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
