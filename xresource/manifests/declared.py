"""Schemas a manifest declares for itself: the editor's modeline or a ``$schema`` key.

``# yaml-language-server: $schema=...`` tells the editor which schema to use;
honouring it here means one declaration serves editor and CI. Local paths
resolve against the manifest's folder; a declared schema identical to one
shipped in the package (``xresource.packaged_schemas``) is skipped: the models
already checked the same rules, faster.
Remote URLs are not fetched (CI machines are often offline); they are ignored.

A declared schema is a path an untrusted manifest chose: it is opened through
``xresource.safe_files`` (a regular file only, within the allowed roots, up to
a size cap), and no problem about it ever quotes the file's content.
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
from xresource.safe_files import DEFAULT_MAX_SMALL_FILE_BYTES, FilePolicy, RefusedFileError, read_checked
from xresource.settings import Settings


def declared_schema_ref(doc: Document) -> str | None:
    if isinstance(doc.data, dict) and isinstance(doc.data.get("$schema"), str):
        return str(doc.data["$schema"])
    return doc.declared_schema


def check_declared_schemas(result: LoadResult, settings: Settings | None = None) -> list[Problem]:
    """Validate each valid document against the schema it declares (if local and different)."""
    policy = FilePolicy.from_settings(settings.registry) if settings is not None else FilePolicy()
    problems: list[Problem] = []
    for name, doc in result.documents.items():
        ref = declared_schema_ref(doc)
        if not ref or "://" in ref:
            continue
        path = doc.file.parent / ref
        schema = _load_schema(path, policy)
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
                    _describe(error, ref),
                    name,
                    format_path(loc) or None,
                    "declared-schema",
                )
            )
    return problems


@cache
def _load_schema(path: Path, policy: FilePolicy) -> Any:
    """A validator for ``path``; None to skip it; a str describing why it is unusable.

    Messages name the path and the reason, never the content: a declared schema may be
    any file the manifest's author pointed at.
    """
    try:
        raw = read_checked(path, policy, DEFAULT_MAX_SMALL_FILE_BYTES)
    except RefusedFileError as exc:
        return f"declared schema {exc.path!r} {exc.reason}"
    if is_shipped_schema(path, raw):
        return None
    try:
        schema = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return f"declared schema {str(path)!r} is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"declared schema {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return f"declared schema {str(path)!r} nests too deeply"
    if not isinstance(schema, dict | bool):
        return f"declared schema {str(path)!r} is not a JSON Schema (a schema is an object)"
    try:
        import jsonschema
    except ImportError:
        return None
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the top level"
        return f"declared schema {str(path)!r} is not a valid JSON Schema (at {where}: {exc.validator} rule)"
    return validator_class(schema)


# Rules whose jsonschema messages quote only the manifest's value, property names and numbers.
_QUOTE_SAFE_RULES = frozenset(
    {
        "required", "type", "additionalProperties", "minLength", "maxLength", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "uniqueItems", "multipleOf",
        "minProperties", "maxProperties",
    }
)  # fmt: skip


def _describe(error: Any, ref: str) -> str:
    """A problem from a declared schema, without quoting the schema's own values.

    ``enum``, ``const`` and ``pattern`` messages would quote content of a file the
    manifest chose (it may not be a schema we wrote at all); those name the rule instead.
    """
    if error.validator in _QUOTE_SAFE_RULES:
        return f"{error.message} (declared schema {ref})"
    return f"does not satisfy the '{error.validator}' rule of the declared schema {ref}"
