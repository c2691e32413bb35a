"""Per-resource status as reported by ``Registry.status()`` and ``/resources``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """A snapshot of one resource; never holds a secret."""

    name: str
    type: str
    state: str
    error: str | None
    path: str | None
    generation: int
    leases: int
    connect_mode: str
    tags: tuple[str, ...]
    since: float
    manifest_hash: str | None
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data
