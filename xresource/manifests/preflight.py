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
from pathlib import Path

from xresource.errors import Problem
from xresource.manifests.document import Document, format_path, iter_strings
from xresource.safe_files import FilePolicy, RefusedFileError, open_fd
from xresource.secrets import iter_references
from xresource.settings import Settings


def check_reference(kind: str, target: str, settings: Settings) -> str | None:
    """Why the reference ``${kind:target}`` would not resolve here; None when it would.

    The file checks are the registry's own (``xresource.safe_files.open_fd``):
    a regular file within the allowed roots, under the size cap.
    """
    if kind == "env":
        return None if target in os.environ else f"environment variable {target!r} is not set"
    if kind != "file":
        return f"unknown reference kind {kind!r}"
    return _check_secret_file(Path(target), settings)


def _check_secret_file(path: Path, settings: Settings) -> str | None:
    # The registry's own checked open: the same verdict as at connect, minus the read.
    policy = FilePolicy.from_settings(settings.registry)
    try:
        fd = open_fd(path, policy)
    except RefusedFileError as exc:
        return f"secret file {exc.path!r} {exc.reason}"
    try:
        size = os.fstat(fd).st_size  # the file opened, not whatever the path names a moment later
    finally:
        os.close(fd)
    if size > policy.max_secret_bytes:
        return (
            f"secret file {str(path)!r} is {size:,} bytes; the limit is {policy.max_secret_bytes:,}"
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
        for path, text in iter_strings(doc.data, ()):
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
