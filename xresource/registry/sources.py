"""Where a registry's manifests come from: folders (a base and overlays) or manifests given in code.

A source reads everything it holds into a :class:`Snapshot` (validated resources and the
reload diff's view of them). Folders are watched and re-read on reload; manifests given in
code change only through :meth:`InlineSource.replace`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from xresource.errors import Problem
from xresource.manifests.inline import InlineManifest, TextFormat, load_inline
from xresource.manifests.overlays import OverlayReader
from xresource.registry.reader import FolderReader, Snapshot
from xresource.settings import Settings


class FolderSource:
    """The manifests of ``folders[0]``, overlaid by each later folder in turn (docs/environments.md)."""

    watchable = True

    def __init__(self, folders: Sequence[Path], settings: Settings) -> None:
        self.folders = tuple(folders)
        overlays = OverlayReader(self.folders[1:], settings) if len(self.folders) > 1 else None
        self._reader = FolderReader(
            self.folders[0], settings, layering=overlays.apply if overlays is not None else None
        )

    @property
    def label(self) -> str:
        return " + ".join(str(f) for f in self.folders)

    def read(self, *, settle: bool, changed: Collection[str] | None = None) -> Snapshot:
        """``changed``: the paths a watcher reported (only those are read again); ``None``: all."""
        return self._reader.read(settle=settle, changed=changed)

    def missing(self) -> list[Problem]:
        """A problem for each folder that does not exist (an unmounted volume, a typo)."""
        return [
            Problem(str(f), None, None, "no such file or directory") for f in self.folders if not f.exists()
        ]

    def watch_roots(self) -> set[Path]:
        return {f for f in self.folders if f.exists()}


class InlineSource(FolderReader):
    """Manifests given in code (``Registry.from_manifests``); ``replace`` swaps them for others."""

    watchable = False

    def __init__(
        self,
        manifests: Iterable[InlineManifest],
        settings: Settings,
        *,
        base_dir: Path,
        text_format: TextFormat,
    ) -> None:
        super().__init__(base_dir, settings)
        self.manifests = list(manifests)
        self.base_dir = base_dir
        self.text_format = text_format

    @property
    def label(self) -> str:
        return f"{len(self.manifests)} manifest(s) given in code"

    def replace(self, manifests: Iterable[InlineManifest]) -> None:
        self.manifests = list(manifests)

    def read(self, *, settle: bool, changed: Collection[str] | None = None) -> Snapshot:
        loaded = load_inline(
            self.manifests, self.settings, base_dir=self.base_dir, text_format=self.text_format
        )
        return Snapshot(loaded, self._desired(loaded), 0.0)

    def missing(self) -> list[Problem]:
        return []

    def watch_roots(self) -> set[Path]:
        return set()


ManifestSource = FolderSource | InlineSource
