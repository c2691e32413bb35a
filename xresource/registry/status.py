"""Per-resource status as reported by ``Registry.status()`` and ``/resources``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from xresource.resource import State, XResource

if TYPE_CHECKING:
    from xresource.registry.entry import Entry


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
    pending: str | None = None
    """Why what the files say for this name is not what runs (``None``: it is), e.g.
    ``"new version failed to connect: ..."`` or ``"its file has problems: ..."``."""
    pending_changes: tuple[str, ...] = ()
    """What the pending version would change, one ``field: old -> new`` each (secrets as references)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The running version's fields as written (with settings defaults; secrets as their references)."""
    line: int | None = None
    """The line of ``path`` where the running version's manifest starts."""
    overridden_by: str | None = None
    """While a test's override stands in for this resource: the stand-in's type name."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["pending_changes"] = list(self.pending_changes)
        return data


def status_of(entry: Entry) -> ResourceStatus:
    """The status of one entry, as ``Registry.status()`` and ``/resources`` show it."""
    resource = entry.resource
    state = entry.state
    connection_state = getattr(resource, "connection_state", None)
    if state is State.READY and connection_state in (State.RECONNECTING, State.FAILED):
        state = connection_state
    error = entry.error or (resource.last_error if state is not State.READY else None)
    return ResourceStatus(
        name=resource.name,
        type=resource.type,
        state=state.value,
        error=error,
        path=str(resource.manifest_path) if resource.manifest_path else None,
        generation=entry.generation,
        leases=entry.leases,
        connect_mode=resource.connect_mode,
        tags=tuple(resource.tags),
        since=entry.since,
        manifest_hash=resource.manifest_hash,
        metadata=resource.get_metadata(),
        pending=entry.pending,
        pending_changes=entry.pending_changes,
        fields=entry.shown_fields,
        line=resource.manifest_line,
    )


def overridden_status(entry: Entry, fake: object) -> ResourceStatus:
    """The status of a name a test's override stands in for: ready, as the stand-in serves."""
    metadata = fake.get_metadata() if isinstance(fake, XResource) else {}
    return replace(
        status_of(entry),
        state=State.READY.value,
        error=None,
        metadata=metadata,
        overridden_by=type(fake).__name__,
    )
