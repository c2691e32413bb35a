"""The xresource error tree.

Every error the library raises on purpose derives from ``XResourceError``::

    XResourceError
    ├── ManifestError                 manifests failed validation (carries every problem)
    ├── UnknownResourceTypeError      also a ValueError: a manifest names a type nobody registered
    ├── MissingDependencyError        also an ImportError: a backend's optional extra is not installed
    ├── XResourceNotFoundError        also a KeyError: no resource of that name in the registry
    ├── XResourceStateError           the resource is not in a state that allows the operation
    ├── XResourceSecretError          a ${env:...} / ${file:...} reference could not be resolved
    ├── XResourceDataError            also a ValueError: a data file is malformed or fails its schema
    └── XResourceConnectionError      a backend could not be reached or refused us
        ├── XResourceAuthenticationError   credentials were rejected
        ├── XResourceTimeoutError          an operation or connect ran out of time
        │   └── XResourcePoolExhaustedError  no pooled connection freed up in time
        └── XResourceRequestError          the server answered with an error (carries status)

Messages name the resource and its type and never contain a resolved secret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from xresource.printable import printable


class XResourceError(Exception):
    """Base class of every error raised by xresource."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can."""

    file: str
    line: int | None
    column: int | None
    message: str
    resource: str | None = None
    field: str | None = None
    code: str = "invalid"
    extra: dict[str, object] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.resource:
            parts.append(self.resource)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return printable(": ".join(parts))  # parts come from manifests: one problem, one line


class ManifestError(XResourceError):
    """Raised when one or more manifests are invalid; ``problems`` lists all of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(
            problems, key=lambda p: (p.file, p.line or 0, p.column or 0, p.message)
        )
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in manifests"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


class UnknownResourceTypeError(XResourceError, ValueError):
    """Raised when a type name is not registered; the message lists the known types."""

    def __init__(self, type_name: str, known: Sequence[str]) -> None:
        self.type_name = type_name
        self.known = list(known)
        super().__init__(f"unknown resource type {type_name!r}; known types: {', '.join(self.known)}")


class MissingDependencyError(XResourceError, ImportError):
    """Raised when a backend's driver is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, type_name: str | None = None) -> None:
        self.module = module
        self.extra = extra
        subject = f"resource type {type_name!r}" if type_name else f"module {module!r}"
        super().__init__(
            f"{subject} needs the optional dependency {module!r}; "
            f"install it with: pip install 'xresource[{extra}]'",
            name=module,
        )


class XResourceNotFoundError(XResourceError, KeyError):
    """Raised by ``Registry.get`` for a name that no manifest defines."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        self.name = name
        hint = ""
        if known:
            import difflib

            close = difflib.get_close_matches(name, known, n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        super().__init__(f"no resource named {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class XResourceStateError(XResourceError):
    """Raised when an operation needs a connected resource and it is not."""


class XResourceSecretError(XResourceError):
    """Raised at connect when a secret reference cannot be resolved."""


class XResourceDataError(XResourceError, ValueError):
    """Raised when a data file cannot be parsed, fails its schema, or data cannot be written to it.

    ``path``, ``line`` and ``column`` locate the problem where the parser tells us (1-based).
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        super().__init__(message)


class XResourceConnectionError(XResourceError):
    """Raised when a backend cannot be reached, or a registry resource is not ready."""


class XResourceAuthenticationError(XResourceConnectionError):
    """Raised when the backend rejected our credentials."""


class XResourceTimeoutError(XResourceConnectionError, TimeoutError):
    """Raised when a connect or an operation did not finish within its timeout."""


class XResourcePoolExhaustedError(XResourceTimeoutError):
    """Raised when no pooled connection became free within the acquire timeout."""


class XResourceRequestError(XResourceConnectionError):
    """Raised when a server answered a request with an error status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


__all__ = [
    "ManifestError",
    "MissingDependencyError",
    "Problem",
    "UnknownResourceTypeError",
    "XResourceAuthenticationError",
    "XResourceConnectionError",
    "XResourceDataError",
    "XResourceError",
    "XResourceNotFoundError",
    "XResourcePoolExhaustedError",
    "XResourceRequestError",
    "XResourceSecretError",
    "XResourceStateError",
    "XResourceTimeoutError",
]
