"""What transport helpers need from the resource they work for."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class SecretOwner(Protocol):
    """A resource as the transport helpers see it: names itself, resolves and scrubs secrets.

    ``XResource`` satisfies it; helpers depend on this, not on the model.
    """

    @property
    def label(self) -> str: ...

    @property
    def manifest_path(self) -> Path | None: ...

    def resolve(self, value: str) -> str: ...

    def scrub(self, text: str) -> str: ...

    def remember_secrets(self, *values: str) -> None: ...

    def read_ca_file(self, ca_file: str | None) -> str | bytes | None: ...
