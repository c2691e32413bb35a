"""Finding manifest files: recursive, ignore rules applied, symlinks followed once.

A folder of manifests often holds other YAML too. What is skipped:

- entries whose name starts with ``.`` (dotfiles, ``.git``, a ConfigMap's
  ``..data`` internals) below a folder being scanned, and a named file whose own
  name starts with ``.``;
- Kustomize files (``kustomization.yaml``, ``kustomization.yml``,
  ``Kustomization``), unless an ignore file re-includes them (``!kustomization.yaml``);
- whatever a ``.xresourceignore`` file excludes, in gitignore syntax (the
  ``pathspec`` library). Like ``.gitignore``, such a file applies to its own
  folder and everything below it, a deeper file wins over a higher one, and a
  pattern is relative to the folder holding the file. Ignore files in the
  folders above a scanned path apply too, up to the top of the git work tree
  (the folder holding ``.git``; as in git, nothing above it), or up to the
  filesystem root outside a git work tree.

Files named on the command line are subject to the same rules, so a pre-commit
hook that passes every changed ``*.yaml`` skips what the folder scan skips.

Symbolic links are followed; a folder reached twice (a loop, or two links to it)
is entered once, and a file reached twice (by ``(device, inode)``) is listed
once. A manifest-named link that leads nowhere (dangling, or a loop) is listed,
so the reader reports it instead of silently dropping what it defined.

The scan is the hot path of a reload: it lists each folder once with
``os.scandir``, works on strings (no ``Path`` per entry), and costs one ``stat``
per manifest (``DirEntry.stat``, which the reader reuses as the file's identity).
"""

from __future__ import annotations

import operator
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

MANIFEST_SUFFIXES = (".yaml", ".yml", ".toml")
IGNORE_FILE = ".xresourceignore"
MAX_IGNORE_FILE_BYTES = 100_000
DEFAULT_IGNORED_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})

Chain = tuple[tuple[str, Any], ...]
"""The ignore files that apply in a folder: (absolute folder, compiled spec), highest first."""


def is_manifest(path: Path) -> bool:
    return is_manifest_name(path.name)


def is_manifest_name(name: str) -> bool:
    """A manifest's file name: a manifest suffix (any case), not a dot entry."""
    return not name.startswith(".") and name.lower().endswith(MANIFEST_SUFFIXES)


class Found(NamedTuple):
    """One manifest file of a listing."""

    path: str
    """As listed: the scanned folder joined with the names below it (symbolic links kept)."""
    info: os.stat_result | None
    """Its ``stat`` (links followed); ``None`` for a link that leads nowhere (or a loop)."""


@dataclass(slots=True)
class Listing:
    """The manifest files under some paths, in order, each once."""

    files: list[Found] = field(default_factory=list)
    linked: bool = False
    """A symbolic link was met on the way (a linked manifest or folder), or a file with a second
    name (a hard link): a change behind it may show no event under the scanned folder, or an
    event only under the other name, so a reader must not trust events alone."""


def iter_manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Manifest files under ``paths`` (named files are kept unless ignored), sorted, each once."""
    for found in list_manifests(paths).files:
        yield Path(found.path)


def list_manifests(paths: Iterable[Path | str], rules: IgnoreRules | None = None) -> Listing:
    """Manifest files under ``paths`` with their ``stat``: folders in sorted order, each file once."""
    listing = Listing()
    seen: set[tuple[int, int]] = set()  # (device, inode): a file reached by two links is listed once
    rules = rules if rules is not None else IgnoreRules()
    for path in paths:
        text = os.fspath(path)
        if os.path.isdir(text):
            _walk(_display(text), rules, seen, listing)
            continue
        name = os.path.basename(text)
        if name.startswith(".") or rules.ignored(text, is_dir=False, top=os.path.dirname(text) or "."):
            continue
        try:
            info: os.stat_result | None = os.stat(text)
        except OSError:
            info = None  # let the reader report what is wrong with it
        listing.linked = listing.linked or os.path.islink(text)
        _add(listing, seen, text, info)
    return listing


def _display(folder: str) -> str:
    """A folder as the files under it are shown: ``Path``'s spelling (``./a`` is ``a``)."""
    return str(Path(folder))


def _add(listing: Listing, seen: set[tuple[int, int]], path: str, info: os.stat_result | None) -> None:
    if info is not None:
        key = (info.st_dev, info.st_ino)
        if key in seen:
            listing.linked = True
            return
        seen.add(key)
    listing.files.append(Found(path, info))


_Folder = tuple[str, str, os.stat_result, Chain]
"""A folder to list: (display path with a trailing ``/``, absolute logical path, stat, ignore chain)."""


def _walk(root: str, rules: IgnoreRules, seen: set[tuple[int, int]], listing: Listing) -> None:
    """Depth first, entries sorted by name: the order of sorting the paths by their parts."""
    root_abs = os.path.abspath(root)
    try:
        root_info = os.stat(root)
    except OSError:
        return
    visited: set[tuple[int, int]] = set()  # folders entered, by (device, inode): loops end here
    prefix = "" if root == "." else root if root.endswith("/") else root + "/"
    # Folders to list and files to add, pushed in reverse so they come off in order.
    stack: list[_Folder | Found] = [(prefix, root_abs, root_info, rules.chain(root_abs, root_abs))]
    while stack:
        item = stack.pop()
        if isinstance(item, Found):
            _add(listing, seen, item.path, item.info)
        else:
            _list_folder(item, item[0] == prefix, rules, seen, visited, listing, stack)


def _list_folder(
    folder: _Folder,
    is_root: bool,
    rules: IgnoreRules,
    seen: set[tuple[int, int]],
    visited: set[tuple[int, int]],
    listing: Listing,
    stack: list[_Folder | Found],
) -> None:
    shown, absolute, info, chain = folder
    key = (info.st_dev, info.st_ino)
    if key in visited:  # a symlink loop or a second link to the same folder
        return
    visited.add(key)
    try:
        with os.scandir(absolute) as it:
            entries = sorted(it, key=_NAME)
    except OSError:
        return  # unreadable or gone: as os.walk, skip it
    if not is_root:  # the scanned folder's own ignore file is in the chain already
        if any(e.name == IGNORE_FILE for e in entries) and (spec := rules.spec(absolute)) is not None:
            chain = (*chain, (absolute, spec))
        else:
            rules.note_no_spec(absolute)
    base = absolute if absolute.endswith("/") else absolute + "/"
    # Files before this folder's first sub-folder are listed at once; from the first sub-folder
    # on, entries wait on the stack so the sub-folder's files come first (the order of paths).
    pushed: list[_Folder | Found] = []
    for entry in entries:
        name = entry.name
        if name[0] == ".":
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            child = base + name
            if chain and _decision(chain, child + "/") is True:
                continue  # as in git, nothing below an ignored folder can be re-included
            try:
                child_info = entry.stat()
            except OSError:
                continue
            if entry.is_symlink():
                listing.linked = True
            pushed.append((shown + name + "/", child, child_info, chain))
            continue
        if not name.lower().endswith(MANIFEST_SUFFIXES):
            continue
        ignored = name in DEFAULT_IGNORED_NAMES
        if chain:
            decision = _decision(chain, base + name)
            if decision is not None:
                ignored = decision
        if ignored:
            continue
        file_info: os.stat_result | None
        if entry.is_symlink():
            listing.linked = True
            try:
                file_info = entry.stat()
            except OSError:
                file_info = None  # dangling or a loop: listed, so the reader reports it
        elif entry.is_file(follow_symlinks=False):
            try:
                file_info = entry.stat()
            except OSError:
                continue  # deleted since the listing
            if file_info.st_nlink > 1:
                listing.linked = True  # a hard link: written through its other name, no event here
        else:
            continue  # a FIFO, socket or device named like a manifest is not read
        if pushed:
            pushed.append(Found(shown + name, file_info))
        else:
            _add(listing, seen, shown + name, file_info)
    stack.extend(reversed(pushed))


_NAME = operator.attrgetter("name")


def _decision(chain: Chain, absolute: str) -> bool | None:
    """The deepest opinion of the ignore files in ``chain`` on ``absolute`` (None: no opinion)."""
    verdict = None
    for folder, spec in chain:
        relative = absolute[len(folder) + (0 if folder.endswith("/") else 1) :]
        decision = spec.check_file(relative).include
        if decision is not None:
            verdict = decision
    return verdict


class IgnoreRules:
    """The ignore files met during one scan, read once each (a rescan reads them again)."""

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}  # absolute folder -> compiled spec, or None without one
        self._tops: dict[str, str] = {}  # scanned path -> highest folder whose ignore file applies
        self._chains: dict[tuple[str, str], Chain] = {}  # (folder, top) -> ignore files that apply

    def ignored(self, path: Path | str, *, is_dir: bool, top: Path | str) -> bool:
        """Whether ``path`` is excluded; ``top`` is the scanned folder (or a named file's folder)."""
        text = os.fspath(path)
        verdict = os.path.basename(text) in DEFAULT_IGNORED_NAMES and not is_dir
        # Logical (symlinks kept), so patterns see the layout as written.
        absolute = os.path.abspath(text)
        chain = self.chain(os.path.dirname(absolute), os.path.abspath(os.fspath(top)))
        decision = _decision(chain, absolute + ("/" if is_dir else ""))
        return verdict if decision is None else decision

    def chain(self, folder: str, top: str) -> Chain:
        """The ignore files that apply in ``folder`` (absolute), highest first; ``top``: the scan's."""
        start = self._tops.get(top)
        if start is None:
            found = _work_tree_top(top)
            start = self._tops[top] = found if found is not None else os.path.abspath(os.sep)
        key = (folder, start)
        chain = self._chains.get(key)
        if chain is None:
            folders = [folder]
            while folders[-1] != start and os.path.dirname(folders[-1]) != folders[-1]:
                folders.append(os.path.dirname(folders[-1]))
            chain = self._chains[key] = tuple(
                (f, spec) for f in reversed(folders) if (spec := self.spec(f)) is not None
            )
        return chain

    def spec(self, folder: str) -> Any:
        """The compiled ignore file of ``folder`` (absolute), or ``None`` without a usable one."""
        if folder not in self._specs:
            self._specs[folder] = _read_spec(os.path.join(folder, IGNORE_FILE))
        return self._specs[folder]

    def note_no_spec(self, folder: str) -> None:
        """A listing showed ``folder`` has no ignore file (saves a ``stat`` if it is asked later)."""
        self._specs.setdefault(folder, None)


def _read_spec(file: str) -> Any:
    try:
        info = os.stat(file)
        # Only a regular file of sane size: a FIFO would block the scan, a huge file stall it.
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IGNORE_FILE_BYTES:
            return None
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # no ignore file (an unreadable one is treated as absent)
    from pathspec import GitIgnoreSpec  # imported only when an ignore file exists: a cold start skips it

    # git skips a line it cannot read as a pattern (a trailing backslash, a lone "!"); so do we.
    return GitIgnoreSpec.from_lines(line for line in text.splitlines() if _is_pattern(GitIgnoreSpec, line))


def _is_pattern(spec_class: Any, line: str) -> bool:
    try:
        spec_class.from_lines([line])
    except ValueError:
        return False
    return True


def _work_tree_top(folder: str) -> str | None:
    """The folder holding ``.git`` at or above ``folder``, if any."""
    here = os.path.abspath(folder)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
