"""Overrides: a fake (or a local stand-in) in place of one named resource, for a test.

The fake goes into the registry's ready map (:class:`ReadyMap`), so ``get`` returns it
with no extra Python frame; ``aget``, ``lease``, ``select`` and ``status`` ask
:meth:`ReadyMap.override_of`. While a name is overridden a reload still replaces the real
resource behind it, but ``get`` keeps returning the fake; when the override ends, the
current real instance is shown again (if it is ready). Overrides of one name stack: the
innermost wins, and each ``with`` block undoes its own, even when blocks end out of order
or with an error.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from pathlib import Path
from typing import Any, Self

from xresource.errors import XResourceNotFoundError, XResourceStateError
from xresource.manifests.inline import InlineManifest, TextFormat, as_list
from xresource.registry.entry import Entry, ReadyMap
from xresource.registry.events import ReloadResult
from xresource.registry.sources import InlineSource, ManifestSource
from xresource.resource import State, XResource
from xresource.settings import Settings, load_settings


class Overrides:
    """The override operations of one registry."""

    def __init__(
        self, ready: ReadyMap, entries: Mapping[str, Entry], declared: Callable[[], Collection[str]]
    ) -> None:
        self._ready = ready
        self._entries = entries
        self._declared = declared
        """The names the manifests declare (asked only when the name is not running)."""

    def _check(self, name: str, fake: object) -> None:
        if fake is None:
            raise TypeError(f"override of {name!r}: give an object to stand in for it, not None")
        if name in self._entries:
            return
        declared = self._declared()
        if name not in declared:
            raise XResourceNotFoundError(name, list(declared))

    @contextmanager
    def override(self, name: str, fake: object) -> Iterator[Any]:
        """``get(name)`` (and ``aget``, ``lease``, ``select``, ``status``) see ``fake`` in this block."""
        self._check(name, fake)
        token = self._ready.push_override(name, fake)
        try:
            yield fake
        finally:
            if self._ready.pop_override(name, token):
                entry = self._entries.get(name)
                if entry is not None:
                    entry.publish()  # the real instance of now (a reload may have replaced it)

    @asynccontextmanager
    async def aoverride(self, name: str, fake: object) -> AsyncIterator[Any]:
        """Like :meth:`override`; an unconnected resource given as ``fake`` is connected first
        and disconnected at the end of the block."""
        self._check(name, fake)
        owned = isinstance(fake, XResource) and fake.state is State.NEW
        if owned:
            assert isinstance(fake, XResource)
            await fake.connect()
        try:
            with self.override(name, fake):
                yield fake
        finally:
            if owned:
                assert isinstance(fake, XResource)
                await fake.disconnect()


class ForTests:
    """``Registry``'s methods for tests (docs/testing.md)."""

    _overrides: Overrides
    _source: ManifestSource
    _started: bool

    async def _reload(self, reason: str) -> ReloadResult:
        raise NotImplementedError

    def _setup(self, source: ManifestSource, path: Path, watch: bool, settings: Settings) -> None:
        raise NotImplementedError

    @classmethod
    def from_manifests(
        cls,
        manifests: InlineManifest | Iterable[InlineManifest],
        *,
        settings: Settings | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        format: TextFormat = "yaml",
    ) -> Self:
        """A registry of manifests given in code: mappings of fields, or YAML (``format="toml"``:
        TOML) text, validated as files are; a problem is located as ``<manifest N>:line``.

        Relative paths resolve against ``base_dir`` (default: the current folder). Nothing is
        watched; :meth:`replace_manifests` is the reload.
        """
        settings = settings if settings is not None else load_settings()
        base = Path(base_dir if base_dir is not None else os.getcwd()).absolute()
        registry = cls.__new__(cls)
        source = InlineSource(as_list(manifests), settings, base_dir=base, text_format=format)
        registry._setup(source, base, False, settings)
        return registry

    def override(self, name: str, fake: object) -> AbstractContextManager[Any]:
        """``with registry.override("user_db", fake):`` ``get``, ``aget``, ``lease``, ``select``
        and ``status`` see ``fake`` instead of ``user_db`` until the block ends (even on error;
        a reload meanwhile does not undo it; overrides nest). An unknown name raises
        ``XResourceNotFoundError``."""
        return self._overrides.override(name, fake)

    def aoverride(self, name: str, fake: object) -> AbstractAsyncContextManager[Any]:
        """``async with`` form of :meth:`override`: an unconnected ``XResource`` given as
        ``fake`` (a local stand-in) is connected first and disconnected when the block ends."""
        return self._overrides.aoverride(name, fake)

    async def replace_manifests(self, manifests: InlineManifest | Iterable[InlineManifest]) -> ReloadResult:
        """For registries built by ``Registry.from_manifests``: swap in other manifests and reload
        (a folder's reload rules: unchanged resources stay, an invalid one changes nothing)."""
        if not isinstance(self._source, InlineSource):
            raise XResourceStateError(
                "replace_manifests() is for registries built by Registry.from_manifests"
            )
        self._source.replace(as_list(manifests))
        if not self._started:
            return ReloadResult()
        return await self._reload("replace_manifests")

    def _declared_names(self) -> list[str]:
        """Names the manifests declare (an override made before ``start()`` checks against them)."""
        snapshot = self._source.read(settle=False)
        return sorted({n for names in snapshot.loaded.names_by_file.values() for n in names})
