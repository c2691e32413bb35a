"""A registry over a base folder and overlays: hot reload watches every folder (docs/environments.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.support import csv_manifest, eventually, fast_settings, swapped, write_atomic
from xresource.errors import ManifestError
from xresource.registry import Registry


@pytest.fixture
def layers(tmp_path: Path, data: Path) -> tuple[Path, Path]:
    base, prod = tmp_path / "resources.d", tmp_path / "overlays" / "prod"
    base.mkdir()
    prod.mkdir(parents=True)
    (base / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "tags: [sales]"))
    (base / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    (prod / "a.yaml").write_text(f"name: a\nfile_path: {data / 'b.csv'}\n")
    return base, prod


async def test_the_overlay_applies_and_an_edit_of_it_is_seen(layers: tuple[Path, Path], data: Path) -> None:
    base, prod = layers
    async with Registry([base, prod], watch=True, settings=fast_settings()) as registry:
        a = registry.get("a")
        assert await a.read() == [{"id": "1", "city": "paris"}]
        assert registry.status()["a"].path == str(base / "a.yaml")
        write_atomic(prod / "a.yaml", f"name: a\nfile_path: {data / 'a.csv'}\ndescription: back\n")
        new = await swapped(registry, "a", a)
        assert await new.read() == [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]
        # A new overlay file in the watched overlay folder is seen too.
        write_atomic(prod / "b.yaml", "name: b\ndescription: changed in prod\n")
        await eventually(lambda: registry.get("b").description == "changed in prod", what="b updated")


async def test_a_broken_or_emptied_overlay_keeps_what_it_overrode(
    layers: tuple[Path, Path], data: Path
) -> None:
    """Falling back to the base's version (say, the development database) would be worse than waiting."""
    base, prod = layers
    async with Registry([base, prod], settings=fast_settings()) as registry:
        a = registry.get("a")
        (prod / "a.yaml").write_text("name: a\nfile_path: [\n")
        result = await registry.reload()
        assert result.rejected == ["a"]
        assert registry.get("a") is a
        assert str(prod / "a.yaml") in (registry.status()["a"].pending or "")

        (prod / "a.yaml").write_text("# nothing here now\n")
        result = await registry.reload()
        assert result.rejected == ["a"]
        assert registry.get("a") is a
        assert "delete the file" in (registry.status()["a"].pending or "")

        (prod / "a.yaml").unlink()  # deleting the overlay is how to drop it on purpose
        result = await registry.reload()
        assert result.replaced == ["a"]
        assert await registry.get("a").read() == [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]


async def test_an_overlay_folder_that_vanishes_removes_nothing(layers: tuple[Path, Path]) -> None:
    base, prod = layers
    async with Registry([base, prod], settings=fast_settings()) as registry:
        a = registry.get("a")
        (prod / "a.yaml").unlink()
        prod.rmdir()
        result = await registry.reload()
        assert (result.replaced, result.removed) == ([], [])
        assert registry.get("a") is a


async def test_start_fails_on_a_missing_overlay_folder_or_an_unknown_override(
    layers: tuple[Path, Path],
) -> None:
    base, prod = layers
    with pytest.raises(ManifestError, match="no such file or directory"):
        await Registry([base, prod.parent / "typo"], settings=fast_settings()).start()
    (prod / "c.yaml").write_text("name: c\ndescription: x\n")
    with pytest.raises(ManifestError) as caught:
        await Registry([base, prod], settings=fast_settings()).start()
    assert f"{prod / 'c.yaml'}:1:1: c: name: overrides 'c', which no earlier folder defines" in str(
        caught.value
    )
