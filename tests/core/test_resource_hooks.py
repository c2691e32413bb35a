"""The hooks the live registry uses on every resource: origin, live fields, copies, connect clean-up."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.waiting import SLACK
from xresource import ResourceFactory
from xresource.backends.files.csv import CsvResource
from xresource.errors import XResourceConnectionError
from xresource.resource import ManifestOrigin, State


def _csv(tmp_path: Path, **fields: object):
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    return ResourceFactory.create("csv", name="d", file_path=str(data), **fields)


def test_bind_manifest_sets_every_origin_property(tmp_path: Path) -> None:
    resource = _csv(tmp_path)
    assert resource.manifest_path is None
    assert resource.fingerprint is None
    origin = ManifestOrigin(tmp_path / "d.yaml", 3, "fields-hash", "fingerprint")
    resource.bind_manifest(origin)
    assert (resource.manifest_path, resource.manifest_line) == (tmp_path / "d.yaml", 3)
    assert (resource.manifest_hash, resource.fingerprint) == ("fields-hash", "fingerprint")
    assert resource.manifest_origin is origin


def test_description_and_tags_are_live_on_every_type() -> None:
    for type_name in ResourceFactory.known_types():
        live = ResourceFactory.get_class(type_name).live_fields()
        assert {"description", "tags"} <= live, type_name
        assert not live & {"name", "type"}, type_name


async def test_apply_live_update_changes_fields_and_refuses_others(tmp_path: Path) -> None:
    resource = _csv(tmp_path, description="old", tags=["a"])
    assert resource.metadata.description == "old"
    await resource.apply_live_update({"description": "new", "tags": ["b"]})
    assert (resource.description, resource.tags) == ("new", ["b"])
    assert resource.metadata.description == "new"
    with pytest.raises(ValueError, match="file_path"):
        await resource.apply_live_update({"file_path": str(tmp_path / "other.csv")})


async def test_a_copy_is_unconnected_and_keeps_its_origin(tmp_path: Path) -> None:
    resource = _csv(tmp_path)
    resource.bind_manifest(ManifestOrigin(tmp_path / "d.yaml", 1, "h", "f"))
    async with resource:
        for copied in (copy.copy(resource), copy.deepcopy(resource), resource.model_copy()):
            assert copied.state.value == "new"
            assert copied.manifest_path == tmp_path / "d.yaml"
            await copied.connect()
            assert await copied.read() == await resource.read()
            await copied.disconnect()
        assert resource.state.value == "ready"


class _HangingCleanup(CsvResource):
    """A CSV resource whose connect fails and whose clean-up never finishes by itself."""

    cleanup_timeout: ClassVar[float] = 0.2
    cleanups: ClassVar[list[str]] = []

    async def _connect(self) -> None:
        raise OSError("the driver refused")

    async def _disconnect(self) -> None:
        self.cleanups.append("started")
        await asyncio.Event().wait()


class _FailingCleanup(_HangingCleanup):
    async def _disconnect(self) -> None:
        raise RuntimeError("half-open client would not close")


async def test_a_slow_clean_up_after_a_failed_connect_is_bounded_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _HangingCleanup.cleanups.clear()
    resource = _HangingCleanup(name="hangs", file_path=str(tmp_path / "d.csv"))
    started = time.monotonic()
    with pytest.raises(XResourceConnectionError, match="the driver refused"):
        await asyncio.wait_for(resource.connect(), 30)
    assert _HangingCleanup.cleanups == ["started"]  # it ran, and was cut short
    assert time.monotonic() - started < resource.cleanup_timeout + SLACK
    assert resource.state is State.FAILED
    assert "did not finish within 0.2s" in caplog.text


async def test_a_clean_up_that_fails_after_a_failed_connect_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resource = _FailingCleanup(name="fails", file_path=str(tmp_path / "d.csv"))
    with pytest.raises(XResourceConnectionError, match="the driver refused"):
        await resource.connect()
    assert "clean-up after a failed connect failed: half-open client would not close" in caplog.text


async def test_a_connect_cancelled_by_its_timeout_cleans_up_within_the_clean_up_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class SlowConnect(_HangingCleanup):
        async def _connect(self) -> None:
            await asyncio.Event().wait()  # a server that never answers

    resource = SlowConnect(name="slow", file_path=str(tmp_path / "d.csv"))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(resource.connect(), 0.1)
    # The caller's timeout plus the clean-up's own bound, not the clean-up's whole (endless) wait.
    assert time.monotonic() - started < 0.1 + resource.cleanup_timeout + SLACK
    assert "did not finish within 0.2s" in caplog.text
