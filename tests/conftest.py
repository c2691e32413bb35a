"""Fixtures shared by every test: fresh global state around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xresource.factory import ResourceFactory

# The plugin's own tests (tests/testing/) run pytest inside pytest.
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _reset_factory() -> Iterator[None]:
    """Types registered by one test must not leak into the next (fsspec clears its caches so)."""
    ResourceFactory.reset()
    yield
    ResourceFactory.reset()


@pytest.fixture(autouse=True)
def _no_settings_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own XRESOURCE_* environment must not change test outcomes."""
    import os

    test_switches = {"XRESOURCE_REQUIRE_SERVICES", "XRESOURCE_UPDATE_SCREENSHOTS"}  # not settings
    for key in list(os.environ):
        if key.startswith("XRESOURCE_") and key not in test_switches:
            monkeypatch.delenv(key)
