"""Editor extensions of the generated schemas, so the editor says what ``xresource validate`` says.

The YAML language server (and VS Code's JSON support) read keywords that JSON
Schema validators ignore:

- ``markdownDescription``: hover text rendered as Markdown. Without it the
  server escapes ``description`` and backticks show up as ``\\```;
- ``patternErrorMessage`` / ``errorMessage``: the message shown when a value
  fails ``pattern`` / any other check of that schema, instead of "String does
  not match the pattern of ...".

A literal password in a URL was described with ``not: {pattern: ...}``, and a
failed ``not`` only ever says "Matches a schema that is not allowed.". It is
rewritten as the equivalent positive pattern (a negative lookahead at the
start: no match anywhere) that can carry its message. The messages repeat the
CLI's wording (``xresource.manifests.loader`` and ``xresource.secrets``); the
schema tests check that editors, validators and the models still agree.
"""

from __future__ import annotations

from typing import Any

from xresource.resource import NAME_PATTERN
from xresource.secrets import LITERAL_URL_PASSWORD_PATTERN, REFERENCE_PATTERN

FIELD_REFERENCE_MESSAGE = (
    "literal secret; write a reference instead, e.g. {field}: ${{env:NAME}} or ${{file:/run/secrets/name}}"
)
URL_REFERENCE_MESSAGE = (
    "the URL holds a literal password; write a reference instead, e.g. scheme://user:${env:NAME}@host"
)
NAME_MESSAGE = f"invalid name: must match {NAME_PATTERN} (lower case, starts with a letter, at most 63 chars)"
NO_LITERAL_URL_PASSWORD = rf"^(?![\s\S]*{LITERAL_URL_PASSWORD_PATTERN})"
"""Matches a string with no literal URL password anywhere: ``not: {pattern: P}`` as a pattern."""


def add_editor_extensions(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the editor keywords to ``schema`` (in place) and return it."""
    _visit(schema, field=None)
    return schema


def enum_message(values: list[Any]) -> str:
    """pydantic's wording for a value outside a ``Literal``: ``Input should be 'a', 'b' or 'c'``."""
    shown = [repr(v) for v in values]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    return f"Input should be {listed}"


def _visit(node: Any, field: str | None) -> None:
    if isinstance(node, list):
        for item in node:
            _visit(item, field)
        return
    if not isinstance(node, dict):
        return
    _rewrite_not_pattern(node)
    if isinstance(node.get("description"), str):
        node.setdefault("markdownDescription", node["description"])
    if isinstance(node.get("pattern"), str):
        node.setdefault("patternErrorMessage", _pattern_message(node["pattern"], field))
    if isinstance(node.get("enum"), list) and node["enum"]:
        node.setdefault("errorMessage", enum_message(node["enum"]))
    for key, value in node.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            for name, child in value.items():
                _visit(child, name)
        elif key == "$defs" and isinstance(value, dict):
            for child in value.values():
                _visit(child, None)
        elif key not in ("enum", "const", "default", "examples"):
            _visit(value, field)


def _rewrite_not_pattern(node: dict[str, Any]) -> None:
    negated = node.get("not")
    if negated != {"pattern": LITERAL_URL_PASSWORD_PATTERN}:
        return
    del node["not"]
    if "pattern" in node:  # keep both: the other pattern moves into allOf
        node.setdefault("allOf", []).append({"pattern": NO_LITERAL_URL_PASSWORD})
    else:
        node["pattern"] = NO_LITERAL_URL_PASSWORD


def _pattern_message(pattern: str, field: str | None) -> str:
    if pattern == REFERENCE_PATTERN:
        return FIELD_REFERENCE_MESSAGE.format(field=field or "field")
    if pattern == NO_LITERAL_URL_PASSWORD:
        return URL_REFERENCE_MESSAGE
    if pattern == NAME_PATTERN:
        return NAME_MESSAGE
    return f"String should match pattern '{pattern}'"  # pydantic's wording
