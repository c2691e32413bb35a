"""JSON Schemas generated from the resource models.

``<type>.schema.json`` holds one type; ``resource.schema.json`` holds every
type, selected by ``type`` with ``if``/``then`` so that editors report the
errors of the chosen type only (a plain ``oneOf`` reports every branch). The
schemas declare draft-07, which is what the YAML language server speaks; the
test suite checks Draft 7 and Draft 2020-12 validators give the same verdicts.
Editor keywords (hover Markdown, the CLI's messages) come from
``xresource.schema_editor``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xresource.docstrings import DocumentedSchema
from xresource.factory import ResourceFactory
from xresource.schema_editor import add_editor_extensions

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
SCHEMA_BASE_ID = "https://xresource.dev/schemas/"


def type_schema(type_name: str) -> dict[str, Any]:
    """The JSON Schema of one resource type."""
    resource_class = ResourceFactory.get_class(type_name)
    schema = resource_class.model_json_schema(
        by_alias=True, mode="validation", schema_generator=DocumentedSchema
    )
    _require_identity(schema)
    schema["properties"]["type"]["description"] = (
        f"The resource type; selects the backend. Always {type_name!r} here."
    )
    schema.setdefault("properties", {})["$schema"] = {
        "type": "string",
        "description": "The JSON Schema this manifest follows (for editors and `xresource validate`).",
    }
    full = {"$schema": DRAFT_07, "$id": f"{SCHEMA_BASE_ID}{type_name}.schema.json", **schema}
    return add_editor_extensions(full)


def resource_schema() -> dict[str, Any]:
    """The schema of any manifest: ``type`` picks the type's schema."""
    defs: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    type_names = ResourceFactory.known_types()
    for type_name in type_names:
        schema = type_schema(type_name)
        for key, value in schema.pop("$defs", {}).items():
            defs[key] = value
        schema.pop("$schema", None)
        schema.pop("$id", None)
        def_name = f"{type_name}_resource"
        defs[def_name] = schema
        branches.append(
            {
                "if": {"properties": {"type": {"const": type_name}}, "required": ["type"]},
                "then": {"$ref": f"#/$defs/{def_name}"},
            }
        )
    return {
        "$schema": DRAFT_07,
        "$id": f"{SCHEMA_BASE_ID}resource.schema.json",
        "title": "xresource manifest",
        "description": "One resource of any type; `type` selects which fields apply.",
        "markdownDescription": "One resource of any type; `type` selects which fields apply.",
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "type": {
                "enum": type_names,
                "description": "The resource type.",
                "markdownDescription": "The resource type.",
                "errorMessage": f"unknown resource type; known types: {', '.join(type_names)}",
            }
        },
        "allOf": branches,
        "$defs": dict(sorted(defs.items())),
    }


def _require_identity(schema: dict[str, Any]) -> None:
    required = schema.setdefault("required", [])
    for key in ("type", "name"):
        if key not in required:
            required.insert(0, key)


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def all_schemas() -> dict[str, str]:
    """File name -> rendered schema, for every type plus ``resource.schema.json``."""
    files = {f"{t}.schema.json": render(type_schema(t)) for t in ResourceFactory.known_types()}
    files["resource.schema.json"] = render(resource_schema())
    return files


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in all_schemas().items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(out_dir: Path) -> list[str]:
    """Names of schema files in ``out_dir`` that are missing or differ from the models."""
    stale = []
    for name, text in all_schemas().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
