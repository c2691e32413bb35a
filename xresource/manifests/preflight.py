"""Preflight of secret references: would every ``${env:}`` and ``${file:}`` resolve here, now?

Validation reads no secret, so a typo in a reference passes it and shows only
when the resource connects. The preflight (``xresource validate --preflight``)
checks, where the secrets are mounted (a CI job, the container entrypoint),
that every environment variable is set and every secret file is a readable
regular file within the allowed roots and under the size cap. It reads no
value: a file is opened (non-blocking, so a FIFO cannot hang it) and examined
through its descriptor, never read; messages name variables and paths, which
the manifest already shows, never what they hold.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests.document import Document, FieldPath, format_path
from xresource.secrets import iter_references
from xresource.settings import Settings

DEFAULT_MAX_SECRET_BYTES = 64 * 1024
"""Used until the settings carry ``[registry] max_secret_bytes`` (the runtime reader's cap)."""

_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def check_reference(kind: str, target: str, settings: Settings) -> str | None:
    """Why the reference ``${kind:target}`` would not resolve here; None when it would.

    The checks mirror what the registry's secret reader enforces at connect
    time; when that reader exposes a check-only entry point, this calls it.
    """
    if kind == "env":
        return None if target in os.environ else f"environment variable {target!r} is not set"
    if kind != "file":
        return f"unknown reference kind {kind!r}"
    return _check_secret_file(Path(target), settings)


def _check_secret_file(path: Path, settings: Settings) -> str | None:
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(r)) for r in settings.registry.allowed_roots]
    if roots and not any(real == root or root in real.parents for root in roots):
        shown = ", ".join(map(str, roots))
        return (
            f"secret file {str(path)!r} is outside the allowed roots ({shown}); see [registry] allowed_roots"
        )
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        return f"secret file {str(path)!r} does not exist"
    except OSError as exc:
        return f"secret file {str(path)!r} cannot be opened ({exc.strerror or type(exc).__name__})"
    try:
        info = os.fstat(fd)  # the file opened, not whatever the path names a moment later
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        return f"secret file {str(path)!r} is {kind}, not a regular file"
    limit: int = getattr(settings.registry, "max_secret_bytes", DEFAULT_MAX_SECRET_BYTES)
    if info.st_size > limit:
        return (
            f"secret file {str(path)!r} is {info.st_size:,} bytes; the limit is {limit:,}"
            " ([registry] max_secret_bytes)"
        )
    return None


def preflight(documents: list[Document], settings: Settings) -> list[Problem]:
    """A problem for every reference in ``documents`` that would not resolve."""
    problems: list[Problem] = []
    verdicts: dict[tuple[str, str], str | None] = {}  # each target is checked once per run
    for doc in documents:
        if not isinstance(doc.data, dict):
            continue
        name = doc.data.get("name") if isinstance(doc.data.get("name"), str) else None
        for path, text in _strings(doc.data, ()):
            if path[:1] == ("$schema",):
                continue
            for kind, target in iter_references(text):
                key = (kind, target)
                if key not in verdicts:
                    verdicts[key] = check_reference(kind, target, settings)
                message = verdicts[key]
                if message is None:
                    continue
                line, col = doc.mark_for(path, value=True)
                problems.append(
                    Problem(str(doc.file), line, col, message, name, format_path(path) or None, "preflight")
                )
    return problems


def _strings(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
