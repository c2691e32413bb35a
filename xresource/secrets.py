"""Secret references: ``${env:NAME}`` and ``${file:/path}``.

Manifests keep references, never values. A reference is resolved only when a
resource connects, and what it resolves to is held as a :class:`Secret`, whose
``str`` and ``repr`` never show the value, so no log line, status page or
exception message can leak it by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

from xresource.errors import XResourceSecretError
from xresource.safe_files import FilePolicy, RefusedFileError, read_secret_file

REFERENCE_RE = re.compile(r"\$\{(env|file):([^}]+)\}")
REFERENCE_PATTERN = r"\$\{(env|file):[^}]+\}"
# A password in a URL's user-info with no reference in it ("scheme://user:pw@host").
# The same expression goes into the JSON Schemas, so editors and models agree.
LITERAL_URL_PASSWORD_PATTERN = r"://[^/@:\s]*:(?:(?!\$\{)[^/@\s])+@"  # noqa: S105 - a pattern, not a password
_LITERAL_URL_PASSWORD_RE = re.compile(LITERAL_URL_PASSWORD_PATTERN)
# Names of mapping keys (headers, driver options) whose values are credentials.
SECRET_KEY_RE = re.compile(
    r"(^|[_-])(password|passwd|secret|token|api[_-]?key|authorization|credentials?)$", re.IGNORECASE
)


class Secret:
    """A resolved secret value that refuses to print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def has_reference(value: str) -> bool:
    return REFERENCE_RE.search(value) is not None


def iter_references(value: str) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, target)`` for each reference in ``value``."""
    for match in REFERENCE_RE.finditer(value):
        yield match.group(1), match.group(2).strip()


def referenced_files(values: Iterable[Any]) -> set[Path]:
    """Files named by ``${file:...}`` anywhere in ``values`` (nested containers included)."""
    found: set[Path] = set()
    for text in _strings(values):
        for kind, target in iter_references(text):
            if kind == "file":
                found.add(Path(target))
    return found


def _strings(values: Iterable[Any]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            yield from _strings(value.values())
        elif isinstance(value, list | tuple | set):
            yield from _strings(value)


def _resolve_one(kind: str, target: str, policy: FilePolicy) -> str:
    """The value of one reference; ``LookupError`` says why not (never with a value)."""
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise LookupError(f"environment variable {target!r} is not set")
        return value
    try:
        return read_secret_file(target, policy)
    except RefusedFileError as exc:
        raise LookupError(f"secret file {target!r} {exc.reason}") from None


def reference_site(origin: Any, reference: str) -> str:
    """``"db.yaml:3: field password: "``: where ``reference`` is written in ``origin``'s manifest.

    Names the manifest file and line and the field(s) holding the reference, never a value.
    """
    if origin is None:
        return ""
    parts: list[str] = []
    path = getattr(origin, "manifest_path", None)
    if path is not None:
        line = getattr(origin, "manifest_line", None) or getattr(origin, "_manifest_line", None)
        parts.append(f"{path}:{line}" if line else str(path))
    dump = getattr(origin, "model_dump", None)
    if callable(dump):
        fields = sorted(_fields_holding(dump(by_alias=True), reference))
        if fields:
            parts.append(("field " if len(fields) == 1 else "fields ") + ", ".join(fields))
    return "".join(f"{p}: " for p in parts)


def _fields_holding(value: Any, reference: str, path: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if reference in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _fields_holding(item, reference, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _fields_holding(item, reference, f"{path}[{index}]")


def resolve(
    value: str,
    *,
    owner: str,
    found: list[str] | None = None,
    policy: FilePolicy | None = None,
    origin: Any = None,
) -> str:
    """Replace every reference in ``value`` with what it points to.

    The caller must treat the result as secret. Each resolved value is appended
    to ``found`` so that error messages can be scrubbed of it later. ``${file:}``
    targets are read through :func:`xresource.safe_files.read_secret_file` under
    ``policy`` (the default: no roots, the default size cap). ``origin`` (the
    resource) lets an error name the manifest file, line and field.
    """
    chosen = policy or FilePolicy()

    def substitute(match: re.Match[str]) -> str:
        try:
            resolved = _resolve_one(match.group(1), match.group(2).strip(), chosen)
        except LookupError as exc:
            site = reference_site(origin, match.group(0))
            raise XResourceSecretError(f"{owner}: {site}{exc.args[0]}") from None
        if found is not None and resolved:
            found.append(resolved)
        return resolved

    return REFERENCE_RE.sub(substitute, value)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove secret values, and any password in URL user-info, from ``text``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return mask_url_password(text)


_URL_USERINFO_RE = re.compile(r"(://[^/@:\s]*:)[^/@\s]+@")


def mask_url_password(text: str) -> str:
    """``scheme://user:pw@host`` -> ``scheme://user:***@host`` (references included)."""
    return _URL_USERINFO_RE.sub(r"\1***@", text)


def suggested_reference(resource: str | None, field: str) -> str:
    env = re.sub(r"[^A-Za-z0-9]+", "_", f"{resource or 'resource'}_{field}").upper().strip("_")
    return f"${{env:{env}}}"


# ---- pydantic field types -----------------------------------------------------------------


def _require_reference(value: str) -> str:
    if value and not has_reference(value):
        raise ValueError(
            "a secret must not be written literally; "
            "write a reference such as ${env:NAME} or ${file:/run/secrets/name}"
        )
    return value


def _reject_url_password(value: str) -> str:
    if _LITERAL_URL_PASSWORD_RE.search(value):
        raise ValueError(
            "the URL holds a literal password; write a reference instead, "
            "e.g. postgresql://app:${env:DB_PASSWORD}@host/db"
        )
    return value


def _reject_secret_keys(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if isinstance(item, str) and SECRET_KEY_RE.search(key) and item and not has_reference(item):
            raise ValueError(
                f"key {key!r} holds a literal secret; write a reference instead, "
                f"e.g. {key}: ${{env:NAME}} or ${{file:/run/secrets/name}}"
            )
        if isinstance(item, str):
            _reject_url_password(item)
    return value


SecretText = Annotated[
    str,
    AfterValidator(_require_reference),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": REFERENCE_PATTERN,
            "description": "A secret: write a ${env:NAME} or ${file:/path} reference, never the value.",
        }
    ),
]
"""A string field that holds a credential and so must be a reference."""

UrlText = Annotated[
    str,
    AfterValidator(_reject_url_password),
    WithJsonSchema({"type": "string", "not": {"pattern": LITERAL_URL_PASSWORD_PATTERN}}),
]
"""A connection URL: any password in its user-info must be a reference."""

OptionsMap = Annotated[dict[str, Any], AfterValidator(_reject_secret_keys)]
"""Free-form options whose credential-like keys must hold references."""

HeaderMap = Annotated[dict[str, str], AfterValidator(_reject_secret_keys)]
"""HTTP headers; credential headers (Authorization, X-Api-Key, ...) must hold references."""
