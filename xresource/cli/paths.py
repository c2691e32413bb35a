"""The PATH arguments of commands that read manifests, and the usage error they raise."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class UsageError(Exception):
    """The command line itself is wrong (exit status 2), as a missing PATH is."""


def existing_paths(paths: Iterable[str]) -> list[Path]:
    """``paths`` as ``Path`` objects; ``UsageError`` naming every one that does not exist."""
    found = [Path(p) for p in paths]
    # A dangling symlink exists as a name: the loader reports it, located, as a broken file.
    missing = [p for p in found if not p.exists() and not p.is_symlink()]
    if missing:
        raise UsageError("; ".join(f"{p}: no such file or directory" for p in missing))
    return found
