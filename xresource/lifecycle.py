"""The words a resource and the registry share about a resource's life.

``State``: the connection states of a resource and of the registry's status;
``Live``: the marker of fields a running instance takes without reconnecting;
``ManifestOrigin``: where the loader read a resource from. ``xresource.resource``
re-exports all three.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class State(enum.StrEnum):
    """Connection states, shared by resources and the registry's status."""

    NEW = "new"
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    DRAINING = "draining"
    CLOSED = "closed"


class _LiveMarker:
    """Type of :data:`Live`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Live"


Live = _LiveMarker()
"""Marks a field that a running instance can take without reconnecting::

    description: Annotated[str | None, Live] = None

A reload that changes only such fields updates the running instance in place
(same pool, same connections; event ``updated``) instead of replacing it.
"""


@dataclass(frozen=True, slots=True)
class ManifestOrigin:
    """Where a resource was read from, bound by the loader."""

    path: Path
    line: int
    manifest_hash: str
    """Hash of the fields as written (with settings defaults); safe to show."""
    fingerprint: str
    """What decides "changed" on reload; internal, never shown."""
