"""The pytest plugin of xresource (entry point ``pytest11``; docs/testing.md).

Fixtures:

- ``make_registry(*manifests, folders=..., settings=..., base_dir=..., format=...)``: builds (does
  not start) a registry from manifests given in code, or from folders (the base, then
  overlays), with test settings (:func:`xresource.testing.settings_for_tests`). Synchronous, so
  it works with any async test runner.
- ``xresource_registry``: a started registry, stopped after the test. Its manifests come from
  the test's ``@pytest.mark.xresource(...)`` (the arguments of ``make_registry``) or, without
  one, from the ``xresource_folders`` ini option. An async fixture: it needs pytest-asyncio.
- ``xresource_override(name, fake, registry=None)``: puts ``fake`` in place of ``name`` for
  the rest of the test (``Registry.override``), in the test's registry unless told another.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the registry is imported when a fixture is used, not when pytest starts
    from xresource.manifests.inline import InlineManifest, TextFormat
    from xresource.registry import Registry
    from xresource.settings import Settings

MARKER = "xresource"
INI_FOLDERS = "xresource_folders"
_REGISTRIES = pytest.StashKey[list["Registry"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_FOLDERS,
        "manifest folders of the xresource_registry fixture: the base, then overlays (relative to the rootdir)",
        type="args",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*manifests, folders=None, settings=None, base_dir=None, format='yaml'): "
        "the manifests of the xresource_registry fixture (dicts or YAML/TOML text, or folders)",
    )


class RegistryMaker:
    """``make_registry``: registries for one test, remembered so ``xresource_override`` finds them."""

    def __init__(self, config: pytest.Config, made: list[Registry]) -> None:
        self._rootdir = Path(config.rootpath)
        self.made = made

    def __call__(
        self,
        *manifests: InlineManifest,
        folders: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
        settings: Settings | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        format: TextFormat = "yaml",
    ) -> Registry:
        """A registry (not started) of ``manifests``, or of ``folders`` (relative to the rootdir)."""
        from xresource.registry import Registry
        from xresource.testing import settings_for_tests

        test_settings = settings if settings is not None else settings_for_tests()
        if folders is not None:
            if manifests:
                raise TypeError("make_registry: give manifests or folders, not both")
            given = [folders] if isinstance(folders, str | os.PathLike) else list(folders)
            registry = Registry([self._rootdir / f for f in given], settings=test_settings)
        else:
            registry = Registry.from_manifests(
                list(manifests), settings=test_settings, base_dir=base_dir or self._rootdir, format=format
            )
        self.made.append(registry)
        return registry


class Overrider:
    """``xresource_override``: overrides undone when the test ends, in reverse order."""

    def __init__(self, made: list[Registry]) -> None:
        self._made = made
        self._active: list[AbstractContextManager[Any]] = []

    def __call__(self, name: str, fake: object, *, registry: Registry | None = None) -> Any:
        """Put ``fake`` in place of ``name`` until the end of the test; returns ``fake``."""
        target = registry if registry is not None else self._only_registry()
        block = target.override(name, fake)
        given = block.__enter__()
        self._active.append(block)
        return given

    def _only_registry(self) -> Registry:
        if len(self._made) == 1:
            return self._made[0]
        if not self._made:
            raise pytest.UsageError(
                "xresource_override: this test has no registry; use xresource_registry or make_registry, "
                "or pass registry=..."
            )
        raise pytest.UsageError("xresource_override: this test made several registries; pass registry=...")

    def undo_all(self) -> None:
        while self._active:
            self._active.pop().__exit__(None, None, None)


def _made(request: pytest.FixtureRequest) -> list[Registry]:
    made: list[Registry] = request.node.stash.setdefault(_REGISTRIES, [])
    return made


@pytest.fixture
def make_registry(request: pytest.FixtureRequest) -> RegistryMaker:
    """Build registries (not started) from manifests in code or from folders, with test settings."""
    return RegistryMaker(request.config, _made(request))


@pytest.fixture
def xresource_override(request: pytest.FixtureRequest) -> Iterator[Overrider]:
    """``xresource_override("user_db", fake)``: ``fake`` stands in for ``user_db`` until the test ends."""
    overrider = Overrider(_made(request))
    try:
        yield overrider
    finally:
        overrider.undo_all()


def _configured_registry(request: pytest.FixtureRequest, make: RegistryMaker) -> Registry:
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        return make(*marker.args, **marker.kwargs)
    folders = request.config.getini(INI_FOLDERS)
    if folders:
        return make(folders=list(folders))
    raise pytest.UsageError(
        f"xresource_registry: say which manifests to load, with @pytest.mark.{MARKER}(...) on the test "
        f"or `{INI_FOLDERS} = resources.d` in the pytest configuration"
    )


async def _started_registry(
    request: pytest.FixtureRequest, make_registry: RegistryMaker
) -> AsyncIterator[Registry]:
    """A started registry (the test's ``xresource`` marker, or the ``xresource_folders`` ini option)."""
    async with _configured_registry(request, make_registry) as registry:
        yield registry


def _needs_pytest_asyncio() -> Registry:
    raise pytest.UsageError(
        "xresource_registry is an async fixture and needs pytest-asyncio (pip install pytest-asyncio); "
        "without it, build one with make_registry and start it in your test (`async with make_registry(...)`)"
    )


xresource_registry: Any
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the test extra installs it
    xresource_registry = pytest.fixture(name="xresource_registry")(_needs_pytest_asyncio)
else:
    xresource_registry = pytest_asyncio.fixture(name="xresource_registry")(_started_registry)
