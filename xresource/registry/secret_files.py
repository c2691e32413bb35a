"""Digests of the secret files a manifest references, so a rotated secret replaces the resource.

Only the live registry calls this, when it diffs (validation reads no
secret). Files are read through :mod:`xresource.safe_files`: only a regular
file within the allowed roots and under ``max_secret_bytes`` is read, so a
hostile ``${file:/dev/zero}`` or a FIFO cannot hang or exhaust the process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xresource.safe_files import FilePolicy, RefusedFileError, read_checked
from xresource.secrets import iter_references


def secret_references(fields: Mapping[str, Any]) -> list[str]:
    """The ``${file:...}`` targets named anywhere in a manifest's fields."""
    found: set[str] = set()
    for text in _strings(fields.values()):
        for kind, target in iter_references(text):
            if kind == "file":
                found.add(target)
    return sorted(found)


def digests(targets: Iterable[str], policy: FilePolicy, cache: dict[str, str]) -> dict[str, str]:
    """``${file:target}`` -> digest of its content (or of why it cannot be read), by reference text.

    ``cache`` holds the digests of one reload, so a file many manifests share is read once.
    """
    out: dict[str, str] = {}
    for target in targets:
        if target not in cache:
            cache[target] = _digest(Path(target), policy)
        out[f"${{file:{target}}}"] = cache[target]
    return out


def _digest(path: Path, policy: FilePolicy) -> str:
    try:
        content = read_checked(path, policy, policy.max_secret_bytes)
    except RefusedFileError as exc:
        return f"refused:{exc.reason}"
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return hashlib.sha256(content).hexdigest()


def _strings(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            yield from _strings(value.values())
        elif isinstance(value, list | tuple):
            yield from _strings(value)
