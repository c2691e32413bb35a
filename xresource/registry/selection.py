"""``Registry.select``: the ready resources matching a tag, a sub-folder and a type."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xresource.resource import State

if TYPE_CHECKING:
    from xresource.registry.entry import Entry


def select(
    entries: Mapping[str, Entry],
    root: Path,
    override_of: Callable[[str], tuple[bool, Any]],
    *,
    tag: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    type_name: str | None = None,
) -> dict[str, Any]:
    """Ready resources of ``entries`` matching every given filter; ``folder`` is relative to ``root``.

    A name a test overrides (``override_of(name)`` is ``(True, fake)``) gives its stand-in.
    """
    base = Path(folder) if folder is not None else None
    if base is not None and not base.is_absolute():
        base = root / base
    found: dict[str, Any] = {}
    for name, entry in sorted(entries.items()):
        resource = entry.resource
        if tag is not None and tag not in resource.tags:
            continue
        if type_name is not None and resource.type != type_name:
            continue
        if base is not None:
            manifest = resource.manifest_path
            if manifest is None or not _is_under(manifest, base):
                continue
        overridden, fake = override_of(name)
        if overridden or entry.state is State.READY:
            found[name] = fake if overridden else resource
    return found


def _is_under(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return False
    return True
