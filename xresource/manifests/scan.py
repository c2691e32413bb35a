"""Finding manifest files: recursive, hidden entries skipped, symlinks followed once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

MANIFEST_SUFFIXES = (".yaml", ".yml", ".toml")


def is_manifest(path: Path) -> bool:
    return path.suffix.lower() in MANIFEST_SUFFIXES and not path.name.startswith(".")


def iter_manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Manifest files under ``paths`` (files are taken as given), sorted, each once."""
    seen: set[tuple[int, int]] = set()
    for path in paths:
        found = sorted(_walk(path)) if path.is_dir() else [path]
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


def _walk(root: Path) -> Iterator[Path]:
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symlink loop or a second link to the same folder
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            file = Path(folder) / name
            # A manifest-named link that leads nowhere (a loop, a missing target) is yielded too:
            # the reader reports it, so the resources it defined are kept, not silently removed.
            if is_manifest(file) and (file.is_file() or file.is_symlink()):
                yield file
