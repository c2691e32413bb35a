"""Editor extensions of the generated schemas, so the editor says what ``xresource validate`` says.

The YAML language server (and VS Code's JSON support) read keywords that JSON
Schema validators ignore:

- ``markdownDescription``: hover text rendered as Markdown. Without it the
  server escapes ``description`` and backticks show up as ``\\```;
- ``patternErrorMessage`` / ``errorMessage``: the message shown when a value
  fails ``pattern`` / any other check of that schema, instead of "String does
  not match the pattern of ...".

Literal secrets are described with ``not`` (``not: {pattern: P}``: P matches
nowhere; ``not: {type: string, not: {pattern: P}}``: every string matches P),
and a failed ``not`` only ever says "Matches a schema that is not allowed.".
Each is rewritten as the equivalent positive pattern (for "nowhere", a
negative lookahead at the start) that can carry its message. The messages repeat the
CLI's wording (``xresource.manifests.loader`` and ``xresource.secrets``); the
schema tests check that editors, validators and the models still agree.
"""

from __future__ import annotations

from typing import Any

from xresource.resource import NAME_PATTERN
from xresource.secrets import LITERAL_URL_PASSWORD_PATTERN, REFERENCE_PATTERN, SCHEMED_REFERENCES_PATTERN

FIELD_REFERENCE_MESSAGE = (
    "literal secret; write a reference instead, e.g. {field}: ${{env:NAME}} or ${{file:/run/secrets/name}}"
)
URL_REFERENCE_MESSAGE = (
    "the URL holds a literal password; write a reference instead, e.g. scheme://user:${env:NAME}@host"
)
NAME_MESSAGE = f"invalid name: must match {NAME_PATTERN} (lower case, starts with a letter, at most 63 chars)"


def matches_nowhere(pattern: str) -> str:
    """``not: {pattern: P}`` as a pattern: a string in which ``P`` matches at no position."""
    return rf"^(?![\s\S]*(?:{pattern}))"


NO_LITERAL_URL_PASSWORD = matches_nowhere(LITERAL_URL_PASSWORD_PATTERN)
"""Matches a string with no literal URL credential anywhere."""


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
    positive = _positive_pattern(node.get("not"))
    if positive is None:
        return
    del node["not"]
    if "pattern" in node:  # keep both: the other pattern moves into allOf
        node.setdefault("allOf", []).append({"pattern": positive})
    else:
        node["pattern"] = positive


def _positive_pattern(negated: Any) -> str | None:
    """The pattern equivalent to ``not: negated`` (``pattern`` applies to strings only), if any."""
    if not isinstance(negated, dict):
        return None
    rest = {k: v for k, v in negated.items() if k != "type"}
    if negated.get("type", "string") != "string":
        return None
    if set(rest) == {"pattern"} and isinstance(rest["pattern"], str):
        return matches_nowhere(rest["pattern"])  # not (a string matching P)
    inner = rest.get("not")
    if set(rest) == {"not"} and isinstance(inner, dict) and set(inner) == {"pattern"}:
        return str(inner["pattern"])  # not (a string not matching P)
    return None


def _pattern_message(pattern: str, field: str | None) -> str:
    if pattern in (REFERENCE_PATTERN, SCHEMED_REFERENCES_PATTERN):
        return FIELD_REFERENCE_MESSAGE.format(field=field or "field")
    if pattern == NO_LITERAL_URL_PASSWORD:
        return URL_REFERENCE_MESSAGE
    if pattern == NAME_PATTERN:
        return NAME_MESSAGE
    return f"String should match pattern '{pattern}'"  # pydantic's wording
