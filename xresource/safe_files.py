"""Opening files a manifest names, safely: the one place every such open goes through.

A manifest is untrusted input, and it names files: data files (``file_path``),
schemas (``json_schema``, ``$schema``), CA bundles (``ca_file``) and secrets
(``${file:...}``). Every one of them is opened here, at the moment it is read,
so that:

- only regular files are read: a FIFO, a device (``/dev/zero``), a socket or a
  folder is refused with a clear error instead of hanging or filling memory
  (the open is non-blocking and the type is checked on the open descriptor);
- with ``[registry] allowed_roots`` set, the file actually opened lies under
  one of the roots, checked at open time on the resolved path and, where the
  platform tells us, on the open descriptor itself, so a file swapped for a
  symlink after it was first checked is still refused;
- what is read into memory is capped (``[registry] max_secret_bytes`` for
  secrets), checked on the descriptor and while reading, so a growing file
  cannot slip past the check.

Errors say what was refused and why, never what the file contains.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from xresource.settings import RegistrySettings

DEFAULT_MAX_SECRET_BYTES = 64 * 1024
"""Secrets are passwords, tokens and keys: a few KiB at most. Anything larger is a mistake or an attack."""

DEFAULT_MAX_SMALL_FILE_BYTES = 8 * 1024 * 1024
"""Cap for small files read whole into memory (schemas, CA bundles)."""

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
    | getattr(os, "O_NOCTTY", 0)  # opening a terminal must not make it ours
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)  # we open the resolved path: a link appearing there is a swap
)
_PROC_FD = Path("/proc/self/fd")


class RefusedFileError(OSError):
    """A file a manifest names was not opened; ``reason`` says why (never its content).

    An ``OSError``, so that a backend's error translation treats it like any file that
    cannot be read (a connection error naming the operation); ``what`` names the field.
    """

    def __init__(self, path: Path | str, reason: str, what: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.what = what
        super().__init__(f"{what + ' ' if what else ''}{self.path!r} {reason}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class FilePolicy:
    """Where a manifest may make the process read, and how much of a secret."""

    allowed_roots: tuple[Path, ...] = ()
    max_secret_bytes: int = DEFAULT_MAX_SECRET_BYTES

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> FilePolicy:
        return cls(tuple(settings.allowed_roots), settings.max_secret_bytes)

    def outside_roots(self, path: Path | str) -> str | None:
        """Why ``path`` (resolved now, links followed) is outside the roots; ``None`` when allowed."""
        if not self.allowed_roots:
            return None
        return _outside(Path(os.path.realpath(path)), self.allowed_roots)


def _outside(real: Path, roots: Iterable[Path]) -> str | None:
    resolved = [Path(os.path.realpath(root)) for root in roots]
    if any(real == root or root in real.parents for root in resolved):
        return None
    allowed = ", ".join(str(r) for r in resolved)
    return f"is outside the allowed roots ({allowed}); see [registry] allowed_roots"


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
    stat.S_IFLNK: "a symbolic link",
}


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return f"is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file"


def open_fd(path: Path | str, policy: FilePolicy) -> int:
    """Open ``path`` for reading as a checked file descriptor; raises ``RefusedFileError``.

    The path is resolved (symlinks followed, as Kubernetes secret and ConfigMap
    volumes need) and the resolved path is opened without following a link, so
    the file checked is the file opened; the descriptor's type and (on Linux)
    its real path are checked again after the open.
    """
    shown = Path(path)
    real = Path(os.path.realpath(path))
    if policy.allowed_roots and (why := _outside(real, policy.allowed_roots)) is not None:
        raise RefusedFileError(shown, why)
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        raise RefusedFileError(shown, _open_failure(real, exc)) from None
    try:
        why = _not_regular(os.fstat(fd).st_mode)
        if why is None and policy.allowed_roots:
            why = _outside(_opened_path(fd, real), policy.allowed_roots)
        if why is not None:
            raise RefusedFileError(shown, why)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: plain blocking reads from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_failure(real: Path, exc: OSError) -> str:
    try:
        why = _not_regular(os.stat(real).st_mode)
    except OSError:
        why = None
    if why is not None:  # a socket (ENXIO) or similar: say what it is
        return why
    if exc.errno is not None and exc.errno == getattr(os, "ELOOP", -1):
        return "was replaced by a symbolic link while being opened"
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    return f"cannot be opened ({exc.strerror or type(exc).__name__})"


def _opened_path(fd: int, fallback: Path) -> Path:
    """The real path of what ``fd`` refers to (Linux knows; elsewhere the resolved name)."""
    try:
        return Path(os.readlink(_PROC_FD / str(fd)))
    except OSError:
        return fallback


def open_checked(path: Path | str, policy: FilePolicy) -> BinaryIO:
    """:func:`open_fd` as a binary file object (the caller closes it)."""
    return os.fdopen(open_fd(path, policy), "rb")


def read_checked(path: Path | str, policy: FilePolicy, max_bytes: int) -> bytes:
    """The whole content of ``path``, opened with :func:`open_fd`, at most ``max_bytes``."""
    fd = open_fd(path, policy)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise RefusedFileError(path, f"is {size} bytes; the limit is {max_bytes}")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(65536, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew since the check
                raise RefusedFileError(path, f"is larger than the limit of {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def ca_data(raw: bytes) -> str | bytes:
    """CA certificates as ``ssl.create_default_context(cadata=...)`` takes them: PEM text or DER."""
    return raw.decode("ascii", "replace") if b"-----BEGIN" in raw else raw


def read_secret_file(path: Path | str, policy: FilePolicy) -> str:
    """A ``${file:...}`` secret: a regular UTF-8 file within the roots and the size cap.

    One trailing line break is dropped (``echo pw > file`` writes one).
    """
    data = read_checked(path, policy, policy.max_secret_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedFileError(path, "is not UTF-8 text") from None
    return text.rstrip("\r\n")


def secret_files_digest(paths: Iterable[Path], policy: FilePolicy) -> str:
    """A digest of the secret files' contents, to notice a rotated secret; never raises.

    A file that is refused or unreadable contributes its reason (not a value), so a
    secret becoming unreadable, or readable again, is a change too. The digest is
    internal: it covers secret content and must never be shown.
    """
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(hashlib.sha256(read_checked(path, policy, policy.max_secret_bytes)).digest())
        except OSError as exc:
            digest.update(b"refused:" + str(getattr(exc, "reason", exc.errno)).encode())
    return digest.hexdigest()
