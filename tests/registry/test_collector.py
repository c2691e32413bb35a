"""``start()`` pauses automatic garbage collection while it builds, and leaves the collector as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.support import csv_manifest, fast_settings
from xresource.errors import ManifestError
from xresource.registry import Registry
from xresource.registry.collector import CollectorPause


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


async def test_start_pauses_collection_and_resumes_it(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    seen: list[bool] = []
    registry = Registry(manifests, settings=fast_settings())
    read = registry._source.read

    def read_and_look(**kwargs: object) -> object:
        seen.append(gc.isenabled())
        return read(**kwargs)  # type: ignore[arg-type]

    registry._source.read = read_and_look  # type: ignore[method-assign]
    async with registry:
        assert seen == [False]  # paused while reading
        assert gc.isenabled()  # and resumed once started
        assert gc.get_freeze_count() == 0  # nothing left frozen


async def test_a_collector_the_application_turned_off_stays_off(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    gc.disable()
    async with Registry(manifests, settings=fast_settings()):
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_objects_the_application_froze_stay_frozen() -> None:
    kept = [{"frozen": True}]
    gc.freeze()
    frozen = gc.get_freeze_count()
    with CollectorPause():
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # not thawed by the pause's promotion
    assert kept


async def test_a_failed_start_resumes_collection(manifests: Path) -> None:
    (manifests / "a.yaml").write_text("name: a\ntype: csv\n")  # file_path is missing
    with pytest.raises(ManifestError):
        await Registry(manifests, settings=fast_settings()).start()
    assert gc.isenabled()


def test_ending_a_pause_twice_is_harmless() -> None:
    pause = CollectorPause().begin()
    assert not gc.isenabled()
    pause.end()
    pause.end()
    assert gc.isenabled()
