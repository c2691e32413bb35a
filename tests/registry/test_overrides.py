"""Overrides: a fake or a local stand-in in place of one resource for a test (docs/testing.md)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests.registry.support import csv_manifest, fast_settings, swapped, write_atomic
from tests.support.services import free_port
from xresource.errors import XResourceConnectionError, XResourceNotFoundError
from xresource.factory import ResourceFactory
from xresource.registry import Registry
from xresource.resource import State


class FakeDb:
    """What a test puts in place of a database: answers the one query the code under test makes."""

    tags = ("db",)

    async def fetchval(self, query: str) -> int:
        return 42


@pytest.fixture
def registry_files(tmp_path: Path) -> Path:
    (tmp_path / "orders.csv").write_text("id\n1\n")
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "orders.yaml").write_text(csv_manifest("orders", tmp_path / "orders.csv", "tags: [sales]"))
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    (folder / "user_db.yaml").write_text(
        f"name: user_db\ntype: postgresql\ntags: [db]\nconnection_string: {dead}\n"
    )
    return folder


async def test_every_way_in_sees_the_fake_and_the_end_of_the_block_undoes_it(registry_files: Path) -> None:
    async with Registry(registry_files, settings=fast_settings()) as registry:
        assert registry.status()["user_db"].state == "failed"
        assert not registry.ready
        real_get = registry.get
        fake = FakeDb()
        with registry.override("user_db", fake) as given:
            assert given is fake
            assert registry.get("user_db") is fake
            assert await registry.aget("user_db") is fake
            async with registry.lease("user_db") as leased:
                assert leased is fake
            assert registry.select(tag="db") == {"user_db": fake}  # filtered by the manifest's tags
            status = registry.status()["user_db"]
            assert (status.state, status.error, status.overridden_by) == ("ready", None, "FakeDb")
            assert registry.ready
            # get() is still the ready map's own C lookup: no Python frame was added.
            assert registry.get == real_get
            assert isinstance(registry.get, types.BuiltinMethodType)
        assert registry.status()["user_db"].state == "failed"
        assert registry.status()["user_db"].overridden_by is None
        with pytest.raises(XResourceConnectionError):  # the real one is not ready again
            registry.get("user_db")


async def test_an_error_in_the_block_still_undoes_it(registry_files: Path) -> None:
    async with Registry(registry_files, settings=fast_settings()) as registry:
        real = registry.get("orders")
        with pytest.raises(RuntimeError, match="boom"), registry.override("orders", "fake"):
            raise RuntimeError("boom")
        assert registry.get("orders") is real


async def test_overrides_nest_and_may_end_out_of_order(registry_files: Path) -> None:
    async with Registry(registry_files, settings=fast_settings()) as registry:
        real = registry.get("orders")
        outer = registry.override("orders", "outer")
        inner = registry.override("orders", "inner")
        outer.__enter__()
        inner.__enter__()
        assert registry.get("orders") == "inner"
        outer.__exit__(None, None, None)  # the outer block ends first: the inner one still stands
        assert registry.get("orders") == "inner"
        inner.__exit__(None, None, None)
        assert registry.get("orders") is real
        with registry.override("orders", "outer"):
            with registry.override("orders", "inner"):
                assert registry.get("orders") == "inner"
            assert registry.get("orders") == "outer"
        assert registry.get("orders") is real


async def test_a_reload_meanwhile_does_not_undo_it_and_the_new_version_shows_after(
    registry_files: Path, tmp_path: Path
) -> None:
    async with Registry(registry_files, settings=fast_settings()) as registry:
        old = registry.get("orders")
        with registry.override("orders", "fake"):
            write_atomic(
                registry_files / "orders.yaml",
                csv_manifest("orders", tmp_path / "orders.csv", "delimiter: ';'"),
            )
            result = await registry.reload()
            assert result.replaced == ["orders"]
            assert registry.get("orders") == "fake"
            assert registry.status()["orders"].generation == 2
        new = await swapped(registry, "orders", old)
        assert new.delimiter == ";"
        assert new.state is State.READY


async def test_an_unknown_name_is_an_error_and_changes_nothing(registry_files: Path) -> None:
    async with Registry(registry_files, settings=fast_settings()) as registry:
        with (
            pytest.raises(XResourceNotFoundError, match="did you mean 'orders'"),
            registry.override("order", 1),
        ):
            pass  # pragma: no cover - never entered
        with pytest.raises(TypeError, match="not None"), registry.override("orders", None):
            pass  # pragma: no cover - never entered
        assert registry.get("orders").state is State.READY
        assert "order" not in registry


async def test_an_override_made_before_start_is_checked_against_the_manifests(registry_files: Path) -> None:
    registry = Registry(registry_files, settings=fast_settings())
    with pytest.raises(XResourceNotFoundError):
        registry.override("nope", 1).__enter__()
    with registry.override("user_db", "fake"):
        async with registry:
            assert registry.get("user_db") == "fake"
            assert registry.ready  # the real one failed; the stand-in serves
        assert registry.get("user_db") == "fake"  # stopping does not undo it either


async def test_aoverride_connects_a_local_stand_in_and_closes_it(
    registry_files: Path, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text("id,name\n1,ada\n")
    stand_in = ResourceFactory.create("csv", name="user_db", file_path=str(tmp_path / "users.csv"))
    async with Registry(registry_files, settings=fast_settings()) as registry:
        async with registry.aoverride("user_db", stand_in) as db:
            assert db is stand_in
            assert stand_in.state is State.READY
            assert await registry.get("user_db").read() == [{"id": "1", "name": "ada"}]
            assert registry.status()["user_db"].metadata["type"] == "csv"
        assert stand_in.state is State.CLOSED
        # One that is already connected belongs to the caller: not closed.
        async with stand_in:
            async with registry.aoverride("user_db", stand_in):
                pass
            assert stand_in.state is State.READY
