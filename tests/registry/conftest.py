"""Fixtures of the registry tests: a manifests folder, data files outside it, a REST server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.registry.support import ApiServer


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Data files live outside the manifests folder (the folder holds manifests only)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text("id,name\n1,ada\n2,grace\n")
    (folder / "b.csv").write_text("id,city\n1,paris\n")
    return folder


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    return folder


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    server = await ApiServer().start()
    yield server
    await server.stop()
