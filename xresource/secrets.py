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
from pydantic_core import PydanticCustomError

from xresource.errors import XResourceSecretError
from xresource.safe_files import FilePolicy, RefusedFileError, read_secret_file
from xresource.scrubbing import scrubber

REFERENCE_RE = re.compile(r"\$\{(env|file):([^}]+)\}")
# Anything shaped like a reference, to tell an unknown scheme (${vault:...}) from a literal.
ANY_REFERENCE_RE = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_.-]*):([^}]*)\}")
SCHEMES = ("env", "file")
_REF = r"\$\{(?:env|file):[^}]+\}"
REFERENCE_PATTERN = rf"^(?:{_REF})+$"
"""A value made of references only: what a secret field holds (also its JSON Schema pattern)."""
_ONLY_REFERENCES_RE = re.compile(REFERENCE_PATTERN)


def _ci(word: str) -> str:
    """``"key"`` -> ``"[kK][eE][yY]"``: JSON Schema patterns (ECMA-262) have no ignore-case flag."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)  # words: letters, _ and -


# Names of mapping keys (headers, driver options) whose values are credentials: the word
# alone or after "_"/"-" ("X-Api-Key", "sasl_plain_password"), in any case.
_SECRET_KEY_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key",
    "access_key", "access-key", "accesskey", "private_key", "private-key", "privatekey", "secret_key",
    "secret-key", "secretkey", "authorization", "auth", "credential", "credentials", "cookie", "signature",
)  # fmt: skip
SECRET_KEY_PATTERN = rf"(^|[_-])(?:{'|'.join(_ci(w) for w in _SECRET_KEY_WORDS)})$"
SECRET_KEY_RE = re.compile(SECRET_KEY_PATTERN)
_SCHEMED_REFERENCES = rf"^(?:[A-Za-z][A-Za-z0-9_-]{{0,19}} +)?(?:{_REF})+$"
# A secret key's value: empty, references, or a scheme word then references ("Bearer ${env:T}").
SCHEMED_REFERENCES_PATTERN = rf"^$|{_SCHEMED_REFERENCES}"
_SCHEMED_REFERENCES_RE = re.compile(SCHEMED_REFERENCES_PATTERN)

# Query parameters that carry credentials: names ending in these words (sslpassword,
# client_secret, X-Amz-Security-Token) ...
_QUERY_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "signature",
    "credential",
    "credentials",
)
# ... or these, alone or after "_"/"-" (key=, sig=, api_key=; not sslkey=, a file path).
_QUERY_WORDS = ("pwd", "key", "sig", "auth", "apikey", "api_key", "api-key", "access_key", "access-key")
_QUERY_NAME = (
    rf"(?:[^=&#\s]*(?:{'|'.join(_ci(w) for w in _QUERY_SUFFIXES)})"
    rf"|(?:[^=&#\s]*[_-])?(?:{'|'.join(_ci(w) for w in _QUERY_WORDS)}))"
)

# Literal secrets in a URL; the same expression goes into the JSON Schemas, so editors and
# models agree. A reference is matched as a unit, so "${file:/run/pw}" (with its slash) counts
# as one; "refs only" means the value is nothing but references (not "hunter2${env:EMPTY}").
_ATOM = r"(?:\$\{[^}]*\}|(?!\$\{)"
_URL_PASSWORD = rf"://{_ATOM}[^/@:\s?#])*:(?!(?:{_REF})+@){_ATOM}[^/@\s])+@"
_URL_QUERY_SECRET = rf"[?&]{_QUERY_NAME}=(?!(?:{_REF})+(?:[&#\s]|$))[^&#\s]"
_URL_USER_TOKEN = rf"^(?:{_ci('http')}[sS]?|{_ci('ws')}[sS]?)://(?!\$\{{)[^/@:\s?#]+@"
_UNKNOWN_SCHEME = r"\$\{(?!(?:env|file):)[A-Za-z][A-Za-z0-9_.-]*:[^}]*\}"
LITERAL_URL_PASSWORD_PATTERN = f"{_URL_PASSWORD}|{_URL_QUERY_SECRET}|{_URL_USER_TOKEN}|{_UNKNOWN_SCHEME}"
"""Matches a URL holding a literal credential: in its password, a secret query parameter, or
(http and ws URLs) a user-info without password, which is a token; or a reference of an
unknown scheme (``${vault:...}``), which would be sent as written."""
_URL_PASSWORD_RE = re.compile(_URL_PASSWORD)
_URL_QUERY_SECRET_RE = re.compile(_URL_QUERY_SECRET)
_URL_USER_TOKEN_RE = re.compile(_URL_USER_TOKEN)


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
    """``True`` when ``value`` holds at least one ``${env:}``/``${file:}`` reference."""
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


def reference_site(origin: object, reference: str) -> str:
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


def _fields_holding(value: object, reference: str, path: str = "") -> Iterator[str]:
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
    origin: object = None,
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
    """Mask resolved values, and any password in URL user-info, out of ``text``.

    Parts, prefixes and re-encoded forms of a value are masked too; see
    :mod:`xresource.scrubbing` for the rule (and for short values).
    """
    values = tuple(sorted({s for s in secrets if s}))
    if values:
        text = scrubber(values)(text)
    return mask_url_password(text)


_URL_USERINFO_RE = re.compile(r"(://[^/@:\s]*:)[^/@\s]+@")


def mask_url_password(text: str) -> str:
    """``scheme://user:pw@host`` -> ``scheme://user:***@host`` (references included)."""
    return _URL_USERINFO_RE.sub(r"\1***@", text)


def suggested_reference(resource: str | None, field: str) -> str:
    env = re.sub(r"[^A-Za-z0-9]+", "_", f"{resource or 'resource'}_{field}").upper().strip("_")
    return f"${{env:{env}}}"


# ---- pydantic field types -----------------------------------------------------------------


def is_only_references(value: str) -> bool:
    """``True`` when ``value`` is nothing but ``${env:}``/``${file:}`` references."""
    return _ONLY_REFERENCES_RE.match(value) is not None


def unknown_scheme(value: str) -> str | None:
    """The scheme of the first reference-shaped ``${scheme:...}`` that is not env or file."""
    for match in ANY_REFERENCE_RE.finditer(value):
        if match.group(1) not in SCHEMES:
            return match.group(1)
    return None


def unknown_scheme_message(scheme: str) -> str:
    return (
        f"unknown reference scheme {scheme!r}; use env or file: ${{env:NAME}} or ${{file:/run/secrets/name}}"
    )


def _check_scheme(value: str) -> None:
    scheme = unknown_scheme(value)
    if scheme is not None:
        raise ValueError(unknown_scheme_message(scheme))


def _require_reference(value: str) -> str:
    _check_scheme(value)
    if value and not is_only_references(value):
        raise ValueError(
            "a secret must not be written literally; write a reference such as ${env:NAME} or "
            "${file:/run/secrets/name} (and nothing else: no text around it)"
        )
    return value


def literal_url_password_message(scheme: str) -> str:
    """The message for a literal password in a ``scheme://`` URL, with that scheme's example."""
    return f"the URL holds a literal password; write a reference instead, e.g. {scheme}://app:${{env:DB_PASSWORD}}@host/db"


def url_secret_problem(value: str) -> str | None:
    """Why the URL ``value`` holds a literal credential (never quoting it), or None."""
    scheme = value.partition("://")[0].strip().lower()
    scheme = scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,19}", scheme) else "scheme"
    if _URL_PASSWORD_RE.search(value):
        return literal_url_password_message(scheme)
    query = _URL_QUERY_SECRET_RE.search(value)
    if query:
        param = value[query.start() + 1 :].partition("=")[0]
        param = param if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", param) else "secret"
        return (
            f"the URL's query parameter {param!r} holds a literal secret; write a reference instead, "
            f"e.g. {param}=${{env:{re.sub(r'[^A-Za-z0-9]+', '_', param).upper()}}}"
        )
    if _URL_USER_TOKEN_RE.search(value):
        return (
            "the URL's user-info holds a literal credential (a token before '@'); write a reference "
            f"instead, e.g. {scheme}://${{env:TOKEN}}@host"
        )
    return None


def _reject_url_password(value: str) -> str:
    _check_scheme(value)
    problem = url_secret_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _reject_secret_keys(value: dict[str, Any]) -> dict[str, Any]:
    problem = secret_map_problem(value, ())
    if problem is not None:
        path, message = problem
        # The key's path goes in the context, so the loader can point at the key's own line.
        raise PydanticCustomError("literal_secret", message, {"key_path": list(path)})
    return value


def secret_map_problem(value: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str] | None:
    """The first literal secret in a free-form map (nested maps and lists too): (path, message)."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = (*path, key)
            if isinstance(item, str):
                scheme = unknown_scheme(item)
                if scheme is not None:
                    return where, unknown_scheme_message(scheme)
                if item and SECRET_KEY_RE.search(str(key)) and not _SCHEMED_REFERENCES_RE.match(item):
                    return where, (
                        f"key {str(key)!r} holds a literal secret; write a reference instead, "
                        f"e.g. {key}: ${{env:NAME}} or ${{file:/run/secrets/name}}"
                    )
            found = secret_map_problem(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = secret_map_problem(item, (*path, index))
            if found is not None:
                return found
    elif isinstance(value, str) and (problem := url_secret_problem(value)):
        return path, problem
    return None


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

# A string under a credential-like key must be references ("not a string that is not"); the
# schema checks the top level of a map, the models every level.
_SECRET_VALUE_SCHEMA = {"not": {"type": "string", "not": {"pattern": SCHEMED_REFERENCES_PATTERN}}}

OptionsMap = Annotated[
    dict[str, Any],
    AfterValidator(_reject_secret_keys),
    WithJsonSchema(
        {
            "type": "object",
            "patternProperties": {SECRET_KEY_PATTERN: _SECRET_VALUE_SCHEMA},
            "additionalProperties": {"not": {"type": "string", "pattern": LITERAL_URL_PASSWORD_PATTERN}},
        }
    ),
]
"""Free-form options whose credential-like keys (nested too) must hold references."""

HeaderMap = Annotated[
    dict[str, str],
    AfterValidator(_reject_secret_keys),
    WithJsonSchema(
        {
            "type": "object",
            "patternProperties": {SECRET_KEY_PATTERN: {"type": "string", **_SECRET_VALUE_SCHEMA}},
            "additionalProperties": {"type": "string"},
        }
    ),
]
"""HTTP headers; credential headers (Authorization, Cookie, X-Api-Key, ...) must hold references."""
