"""Reading the files a manifest names (data, schemas, CA bundles), checked at every open.

A mixin of ``XResource``: the allowed roots and size caps come from the
``FilePolicy`` the loader binds (``[registry]`` settings), and every open goes
through :mod:`xresource.safe_files`, so a file swapped for a link to somewhere
else after the manifest was loaded is still refused (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from xresource import safe_files
from xresource.safe_files import FilePolicy, RefusedFileError


class ManifestFiles:
    """Checked access to the files a resource's manifest names."""

    __slots__ = ()

    if TYPE_CHECKING:  # provided by XResource
        _file_policy: FilePolicy

        @property
        def manifest_path(self) -> Path | None: ...

        def resolve(self, value: str) -> str: ...

    def open_checked(self, path: Path | str, what: str) -> BinaryIO:
        """Open a file this manifest names (field ``what``) for reading, checked at this open.

        Only a regular file within the allowed roots is opened (see ``xresource.safe_files``);
        otherwise ``RefusedFileError`` (an ``OSError``, translated like any unreadable file)
        names the field, the path and the reason.
        """
        try:
            return safe_files.open_checked(path, self._file_policy)
        except RefusedFileError as exc:
            raise RefusedFileError(exc.path, exc.reason, what) from None

    def read_checked(self, path: Path | str, what: str) -> bytes:
        """The whole of a small file this manifest names (a schema, a CA bundle), checked as above."""
        try:
            return safe_files.read_checked(path, self._file_policy, safe_files.DEFAULT_MAX_SMALL_FILE_BYTES)
        except RefusedFileError as exc:
            raise RefusedFileError(exc.path, exc.reason, what) from None

    def read_ca_file(self, ca_file: str | None) -> str | bytes | None:
        """``ca_file`` read through the checked open, as ``SSLContext(cadata=...)`` takes it.

        References are resolved; a relative path is relative to the manifest's folder.
        """
        if not ca_file:
            return None
        path = Path(self.resolve(ca_file)).expanduser()
        if not path.is_absolute() and self.manifest_path is not None:
            path = self.manifest_path.parent / path
        return safe_files.ca_data(self.read_checked(path, "ca_file"))

    def check_within_roots(self, path: Path | str, what: str) -> None:
        """Refuse a path outside the allowed roots (for writes, and drivers that open paths themselves)."""
        why = self._file_policy.outside_roots(path)
        if why is not None:
            raise RefusedFileError(path, why, what)
