"""A reload skips files whose identity did not change, and never misses a change because of it.

Identity is (device, inode, size, mtime, ctime); a file changed within the racy window is
read again whatever its identity says. These tests set the window to 0 so that identity
alone decides, which is the hardest case for correctness.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.registry.support import ApiServer, ConfigMapDir, csv_manifest, fast_settings, rest_manifest
from xresource.registry import Registry, reader
from xresource.registry.reader import FolderReader


@pytest.fixture(autouse=True)
def _identity_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "RACY_SECONDS", 0.0)


def test_an_untouched_file_is_not_read_again(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    folder = FolderReader(manifests, fast_settings())
    first = folder.read(settle=False).loaded.resources
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "a.csv"))
    second = folder.read(settle=False).loaded.resources
    assert second["a"] is first["a"]  # what was read last time, as it was
    assert second["b"] is not first["b"]
    assert second["b"].file_path == data / "a.csv"


async def test_a_same_size_edit_with_the_same_mtime_is_seen(manifests: Path, data: Path) -> None:
    path = manifests / "a.yaml"
    path.write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        a = registry.get("a")
        await registry.reload()  # identity recorded
        before = path.stat()
        text = csv_manifest("a", data / "b.csv")
        assert len(text) == before.st_size  # a.csv -> b.csv: the same size
        with path.open("r+") as handle:  # in place: the same inode
            handle.write(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime as it was (a coarse clock)
        assert path.stat().st_mtime_ns == before.st_mtime_ns
        assert path.stat().st_ino == before.st_ino
        result = await registry.reload()
        assert result.replaced == ["a"]
        assert registry.get("a") is not a


async def test_a_configmap_swap_is_hashed_once_and_unchanged_content_kept(tmp_path: Path, data: Path) -> None:
    volume = ConfigMapDir(tmp_path / "config")
    volume.update({"a.yaml": csv_manifest("a", data / "a.csv"), "b.yaml": csv_manifest("b", data / "a.csv")})
    async with Registry(volume.folder, settings=fast_settings()) as registry:
        a, b = registry.get("a"), registry.get("b")
        await registry.reload()
        # Every file's identity changes with the swap; only b's content does.
        volume.update(
            {"a.yaml": csv_manifest("a", data / "a.csv"), "b.yaml": csv_manifest("b", data / "b.csv")}
        )
        result = await registry.reload()
        assert result.replaced == ["b"]
        assert result.unchanged == ["a"]
        assert registry.get("a") is a
        assert registry.get("b") is not b


async def test_a_rotated_secret_is_seen_while_the_manifest_is_skipped(
    tmp_path: Path, manifests: Path, api: ApiServer
) -> None:
    token = tmp_path / "token"
    token.write_text("token-one")
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(manifests, settings=fast_settings()) as registry:
        old = registry.get("api")
        assert (await registry.reload()).unchanged == ["api"]
        token.write_text("token-two")
        result = await registry.reload()
        assert result.replaced == ["api"]
        assert (await registry.get("api").get(""))["authorization"] == "Bearer token-two"
        assert registry.get("api") is not old
