"""What a resource type's fields are, for people: ``init`` skeletons and the manifest reference.

Everything here is read from the model's JSON Schema (types, defaults, the
attribute docstrings that became descriptions), so the skeletons and the
generated documentation can never disagree with validation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from xresource.factory import ResourceFactory
from xresource.schema import type_schema
from xresource.secrets import REFERENCE_PATTERN, REFERENCE_RE, suggested_reference

# The fields every type has (from ``XResource``); they open every skeleton and table.
COMMON_FIELDS = ("name", "type", "description", "tags", "connect")
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One manifest field as it is written (by alias) and documented."""

    name: str
    type_text: str
    required: bool
    default: Any  # ``_MISSING`` when the field is required
    description: str
    deprecated: bool = False  # an old spelling still accepted (the schema says ``deprecated``)

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING


def plain(text: str) -> str:
    """reST inline literals (````x````) as Markdown ones (```x```)."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def summary(type_name: str) -> str:
    """The first paragraph of the type's class docstring, on one line."""
    doc = ResourceFactory.get_class(type_name).__doc__ or ""
    first = doc.strip().split("\n\n", 1)[0]
    return plain(" ".join(first.split()))


def describe_fields(type_name: str) -> list[FieldDoc]:
    """Every field of ``type_name`` in manifest order: the common fields, then required, then the rest."""
    from xresource.docstrings import attribute_docstrings
    from xresource.resource import XResource

    schema = type_schema(type_name)
    defs = schema.get("$defs", {})
    # A subclass that redeclares a common field (``type``) may leave out its docstring.
    docs_of_base = attribute_docstrings(XResource)
    common_docs = {(f.alias or n): docs_of_base.get(n, "") for n, f in XResource.model_fields.items()}
    required = set(schema.get("required", []))
    docs: list[FieldDoc] = []
    for name, prop in schema.get("properties", {}).items():
        if name == "$schema":
            continue
        is_required = name in required
        default = prop.get("default", _MISSING)
        if default is _MISSING and not is_required:
            default = _factory_default(type_name, name)
        docs.append(
            FieldDoc(
                name=name,
                type_text=type_text(prop, defs),
                required=is_required,
                default=default,
                description=plain(
                    " ".join(str(prop.get("description") or common_docs.get(name, "")).split())
                ),
                deprecated=bool(prop.get("deprecated", False)),
            )
        )
    return sorted(docs, key=lambda f: _order(f, docs))


def _order(field: FieldDoc, docs: list[FieldDoc]) -> tuple[int, int]:
    if field.name in COMMON_FIELDS:
        return (0, COMMON_FIELDS.index(field.name))
    return (3 if field.deprecated else 1 if field.required else 2, docs.index(field))


def _factory_default(type_name: str, alias: str) -> Any:
    """Defaults made by a ``default_factory`` are not in the schema; ask the model."""
    from pydantic_core import to_jsonable_python

    for name, info in ResourceFactory.get_class(type_name).model_fields.items():
        if (info.alias or name) == alias and not info.is_required():
            return to_jsonable_python(info.get_default(call_default_factory=True))
    return None


def type_text(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short, readable type for a JSON Schema property: ``integer``, ``list of string`` ..."""
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return str(target.get("title", prop["$ref"].rsplit("/", 1)[-1]))
    if prop.get("pattern") == REFERENCE_PATTERN:
        return "secret reference"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [type_text(p, defs) for p in prop[key]]
            return " or ".join(dict.fromkeys(parts))
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items")
        return f"list of {type_text(items, defs)}" if isinstance(items, dict) and items else "list"
    if kind == "object":
        values = prop.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"mapping of {type_text(values, defs)}"
        return "mapping"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    return str(kind) if kind else "any"


# ---- example values ---------------------------------------------------------------------------


def example_value(type_name: str, field: str, resource_name: str) -> Any:
    """A valid example for a field: the model's own ``examples`` (``Field(examples=[...])``) first.

    A secret reference in a model's example is renamed after the resource
    (``${env:DB_PASSWORD}`` becomes ``${env:USER_DB_PASSWORD}`` for ``user_db``).
    """
    info = _model_field(type_name, field)
    if info is not None and info.examples:
        example = info.examples[0]
        if isinstance(example, str):
            reference = suggested_reference(resource_name, "password")
            return REFERENCE_RE.sub(lambda _: reference, example)
        return example
    extra = ResourceFactory.get_class(type_name).model_config.get("json_schema_extra")
    if isinstance(extra, dict):
        examples = extra.get("examples")
        if isinstance(examples, list) and examples and isinstance(examples[0], dict) and field in examples[0]:
            return examples[0][field]
    if field == "file_path":
        suffix = getattr(ResourceFactory.get_class(type_name), "file_suffix", "") or type_name
        return f"data/{resource_name}.{suffix}"
    return _placeholder(type_schema(type_name)["properties"].get(field, {}))


def _model_field(type_name: str, alias: str) -> Any:
    for name, info in ResourceFactory.get_class(type_name).model_fields.items():
        if (info.alias or name) == alias:
            return info
    return None


def _placeholder(prop: dict[str, Any]) -> Any:
    """Something of the right JSON type, for fields of third-party types we know nothing about."""
    if "enum" in prop:
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "integer":
        return int(prop.get("minimum", 1))
    if kind == "number":
        return float(prop.get("minimum", 1.0))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "CHANGE_ME"


def example_manifest(type_name: str, resource_name: str) -> dict[str, Any]:
    """A small valid manifest of ``type_name``: name, type, every required field, and every
    field with an example even where it has a default (Kafka's ``bootstrap_servers``)."""
    manifest: dict[str, Any] = {"name": resource_name, "type": type_name}
    for field in describe_fields(type_name):
        info = _model_field(type_name, field.name)
        featured = bool(info is not None and info.examples)
        if (field.required or featured) and field.name not in manifest:
            manifest[field.name] = example_value(type_name, field.name, resource_name)
    return manifest


def yaml_line(key: str, value: Any) -> str:
    """``key: value`` on one line: block style for scalars, flow style (``[a, b]``) for collections."""
    if isinstance(value, dict | list):
        flow = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
        quoted_key = yaml.safe_dump({key: 0}, default_flow_style=False).strip()[: -len(": 0")]
        return f"{quoted_key}: {flow}"
    return yaml.safe_dump({key: value}, default_flow_style=False, width=10**6, sort_keys=False).strip()
