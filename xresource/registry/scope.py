"""Which names a reload must decide, so that deciding costs what changed.

The reader hands back the very same :class:`Version` object for a name whose
files were not read again, and the registry keeps the version each entry was
built from (or rebound to). A name whose running version *is* the desired one,
with nothing pending, from a file without problems that is not being written,
would come out of :func:`diff` as unchanged with nothing to do: it is left out.
What remains (changed, added, removed, pending, or in a file with problems or
held back) is diffed exactly as a full comparison would diff it: every file
those names run from or are declared in goes along.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xresource.registry.diff import Desired, Version
from xresource.registry.entry import Entry


@dataclass(slots=True)
class Scope:
    """The part of a reload that may change something, and the names it leaves as they are."""

    running: dict[str, Version]
    desired: Desired
    untouched: list[str]


def narrow(entries: Mapping[str, Entry], desired: Desired) -> Scope:
    """Split a reload into what :func:`diff` must decide and the names it cannot change."""
    versions = desired.versions
    names_by_file = desired.names_by_file
    decide = {
        name
        for name, version in versions.items()
        if (entry := entries.get(name)) is None or entry.version is not version or entry.pending is not None
    }
    decide.update(entries.keys() - versions.keys())
    frozen = {problem.file for problem in desired.problems} | desired.held_files
    for file in frozen:
        decide.update(names_by_file.get(file, ()))
    running = {name: entries[name].version for name in decide if name in entries}
    files = set(frozen)
    files.update(v.path for v in running.values() if v.path is not None)
    files.update(p for n in decide if n in versions and (p := versions[n].path) is not None)
    scoped = Desired(
        versions={name: versions[name] for name in decide if name in versions},
        problems=desired.problems,
        names_by_file={f: names_by_file[f] for f in files if f in names_by_file},
        held_files=desired.held_files,
    )
    untouched = [name for name in entries if name not in decide]
    return Scope(running, scoped, untouched)
