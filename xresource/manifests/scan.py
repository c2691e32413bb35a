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
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MANIFEST_SUFFIXES = (".yaml", ".yml", ".toml")
IGNORE_FILE = ".xresourceignore"
MAX_IGNORE_FILE_BYTES = 100_000
DEFAULT_IGNORED_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_SUFFIXES and not path.name.startswith(".")


def iter_manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Manifest files under ``paths`` (named files are kept unless ignored), sorted, each once."""
    seen: set[tuple[int, int]] = set()
    rules = IgnoreRules()
    for path in paths:
        if path.is_dir():
            found = sorted(_walk(path, rules))
        elif path.name.startswith(".") or rules.ignored(path, is_dir=False, top=path.parent):
            continue
        else:
            found = [path]
        for file in found:
            try:
                info = file.stat()  # (device, inode) identifies a file reached by two links
            except OSError:
                yield file  # let the reader report what is wrong with it
                continue
            key = (info.st_dev, info.st_ino)
            if key not in seen:
                seen.add(key)
                yield file


def _walk(root: Path, rules: IgnoreRules) -> Iterator[Path]:
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symlink loop or a second link to the same folder
            dirs[:] = []
            continue
        visited.add(real)
        here = Path(folder)
        # An ignored folder is not entered: as in git, nothing below it can be re-included.
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not rules.ignored(here / d, is_dir=True, top=root)
        )
        for name in files:
            file = here / name
            # A manifest-named link that leads nowhere (a loop, a missing target) is yielded too:
            # the reader reports it, so the resources it defined are kept, not silently removed.
            if (
                is_manifest(file)
                and not rules.ignored(file, is_dir=False, top=root)
                and (file.is_file() or file.is_symlink())
            ):
                yield file


class IgnoreRules:
    """The ignore files met during one scan, read once each (a rescan reads them again)."""

    def __init__(self) -> None:
        self._specs: dict[Path, Any] = {}  # folder -> compiled spec, or None without an ignore file
        self._tops: dict[Path, Path] = {}  # scanned path -> highest folder whose ignore file applies
        self._chains: dict[tuple[Path, Path], list[Path]] = {}  # (folder, top) -> folders with rules

    def ignored(self, path: Path, *, is_dir: bool, top: Path) -> bool:
        """Whether ``path`` is excluded; ``top`` is the scanned folder (or a named file's folder)."""
        verdict = path.name in DEFAULT_IGNORED_NAMES and not is_dir
        path = Path(os.path.abspath(path))  # logical (symlinks kept), so patterns see the layout as written
        for folder in self._chain(path.parent, Path(os.path.abspath(top))):
            spec = self._spec(folder)
            relative = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
            decision = spec.check_file(relative).include
            if decision is not None:  # the deepest file with an opinion wins, as in git
                verdict = decision
        return verdict

    def _chain(self, folder: Path, top: Path) -> list[Path]:
        """Folders that hold an ignore file, from the highest applicable one down to ``folder``."""
        start = self._tops.get(top)
        if start is None:
            start = self._tops[top] = _work_tree_top(top) or Path(top.anchor)
        key = (folder, start)
        found = self._chains.get(key)
        if found is None:
            chain = [folder]
            while chain[-1] != start and chain[-1] != chain[-1].parent:
                chain.append(chain[-1].parent)
            found = self._chains[key] = [f for f in reversed(chain) if self._spec(f) is not None]
        return found

    def _spec(self, folder: Path) -> Any:
        if folder not in self._specs:
            self._specs[folder] = _read_spec(folder / IGNORE_FILE)
        return self._specs[folder]


def _read_spec(file: Path) -> Any:
    try:
        info = file.stat()
        # Only a regular file of sane size: a FIFO would block the scan, a huge file stall it.
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IGNORE_FILE_BYTES:
            return None
        text = file.read_text(encoding="utf-8")
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


def _work_tree_top(folder: Path) -> Path | None:
    """The folder holding ``.git`` at or above ``folder``, if any."""
    here = Path(os.path.abspath(folder))
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None
