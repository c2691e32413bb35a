"""Digests of the secret files a manifest references, so a rotated secret replaces the resource.

Only the live registry calls this, when it diffs (validation reads no
secret). A reference is read only when it is a regular file within the
allowed roots and under a size cap: a device, FIFO or socket is never
opened for reading (``O_NONBLOCK`` keeps even the open from waiting), so a
hostile ``${file:/dev/zero}`` cannot hang or exhaust the process.

TODO(secrets): switch ``_read_regular`` to the project's safe reader,
``xresource.secrets.read_secret_file`` (regular files only, allowed roots
checked at open, size cap from settings) once it exists, and drop the local
copy here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xresource.secrets import iter_references

MAX_SECRET_BYTES = 64 * 1024
"""Larger secret files are not read (their digest says so); a secret is a few hundred bytes."""


def secret_references(fields: Mapping[str, Any]) -> list[str]:
    """The ``${file:...}`` targets named anywhere in a manifest's fields."""
    found: set[str] = set()
    for text in _strings(fields.values()):
        for kind, target in iter_references(text):
            if kind == "file":
                found.add(target)
    return sorted(found)


def digests(targets: Iterable[str], roots: list[Path], cache: dict[str, str]) -> dict[str, str]:
    """``${file:target}`` -> digest of its content (or of why it cannot be read), by reference text.

    ``cache`` holds the digests of one reload, so a file many manifests share is read once.
    """
    out: dict[str, str] = {}
    for target in targets:
        if target not in cache:
            cache[target] = _digest(Path(target), roots)
        out[f"${{file:{target}}}"] = cache[target]
    return out


def _digest(path: Path, roots: list[Path]) -> str:
    try:
        content = _read_regular(path, roots)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    except ValueError as exc:
        return f"refused:{exc}"
    return hashlib.sha256(content).hexdigest()


def _read_regular(path: Path, roots: list[Path]) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > MAX_SECRET_BYTES:
            raise ValueError("too large")
        if roots:
            # Checked on what was opened, so a link swapped in after a check cannot escape.
            real = (
                Path(os.readlink(f"/proc/self/fd/{fd}"))
                if os.path.exists("/proc/self/fd")
                else path.resolve()
            )
            if not any(real == root or root in real.parents for root in roots):
                raise ValueError("outside the allowed roots")
        return os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)


def _strings(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            yield from _strings(value.values())
        elif isinstance(value, list | tuple):
            yield from _strings(value)
