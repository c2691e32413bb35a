"""``[registry] reload_jitter``: watcher-triggered reloads wait a random delay; nothing else does.

The delay is ``random.uniform(0, reload_jitter)``; the tests pin it to the top of the
range so "not yet applied" is certain rather than likely.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.registry.support import csv_manifest, eventually, fast_settings, stays
from xresource import Registry
from xresource.errors import ManifestError
from xresource.settings import load_settings

HOUR = 3600.0


@pytest.fixture
def longest_delay(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Every jitter draws its largest value; the ranges asked for are recorded."""
    asked: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr("xresource.registry.triggers.random.uniform", top)
    return asked


async def test_a_change_the_watcher_sees_waits_for_the_jitter(
    manifests: Path, data: Path, longest_delay: list[tuple[float, float]]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings(reload_jitter=0.5)) as registry:
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await eventually(lambda: longest_delay, what="the watcher drew a delay")
        assert longest_delay[0] == (0, 0.5)
        await eventually(lambda: registry.status()["a"].generation == 2, what="applied after the delay")
        assert await registry.get("a").read() == [{"id": "1", "city": "paris"}]


async def test_jitter_delays_neither_an_explicit_reload_nor_stop(
    manifests: Path, data: Path, longest_delay: list[tuple[float, float]]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    registry = Registry(manifests, watch=True, settings=fast_settings(reload_jitter=HOUR))
    await registry.start()
    try:
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await eventually(lambda: longest_delay, what="the watcher is waiting out its jitter")
        await stays(lambda: registry.status()["a"].generation == 1, duration=0.3, what="not applied yet")
        result = await asyncio.wait_for(registry.reload(), 30)  # a guard against a hang, not a timing
        assert result.replaced == ["a"]
        assert registry.status()["a"].generation == 2
    finally:
        # The watcher's delay has most of an hour to go: stop() cancels it.
        await asyncio.wait_for(registry.stop(), 30)
    assert registry.status() == {}


async def test_no_jitter_by_default(
    manifests: Path, data: Path, longest_delay: list[tuple[float, float]]
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await eventually(lambda: registry.status()["a"].generation == 2, what="applied")
    assert longest_delay == []


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("reload_jitter = -1", "reload_jitter"),
        ("reload_jitter = 'soon'", "reload_jitter"),
        ("reload_jitter = 1e9", "reload_jitter"),
        ("reload_surge = 0", "reload_surge"),
        ("reload_surge = -3", "reload_surge"),
        ("reload_surge = 1.5", "reload_surge"),
    ],
)
def test_bad_fleet_settings_are_refused_naming_the_file_and_field(
    tmp_path: Path, line: str, field: str
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f"[registry]\n{line}\n")
    with pytest.raises(ManifestError) as caught:
        load_settings(settings, environ=False)
    problem = caught.value.problems[0]
    assert problem.file == str(settings)
    assert problem.field == f"registry.{field}"


def test_fleet_settings_are_read_from_the_file(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[registry]\nreload_jitter = 5\nreload_surge = 2\n")
    loaded = load_settings(settings, environ=False).registry
    assert (loaded.reload_jitter, loaded.reload_surge) == (5.0, 2)
