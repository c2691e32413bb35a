"""A reload after a watcher event reads the files the event names, and never misses a change for it.

The reader is driven directly where the test must control exactly which paths an
"event" names; the watcher tests go through a real watcher on real files.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.registry.support import (
    ApiServer,
    ConfigMapDir,
    csv_manifest,
    eventually,
    fast_settings,
    rest_manifest,
    swapped,
    write_atomic,
)
from xresource.registry import Registry, reader
from xresource.registry.reader import FolderReader, Snapshot


@pytest.fixture
def identity_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's identity alone decides whether it is read again (no racy window): the hardest case."""
    monkeypatch.setattr(reader, "RACY_SECONDS", 0.0)


def real(path: Path) -> str:
    """A path as the watcher reports it (it watches the resolved folder)."""
    return os.path.realpath(path)


def hashes(snapshot: Snapshot) -> dict[str, tuple[str | None, str | None]]:
    return {n: (v.manifest_hash, v.path) for n, v in snapshot.desired.versions.items()}


# ---- the reader: what a targeted read looks at ----------------------------------------------------


def test_a_targeted_read_looks_only_at_the_reported_files(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "a.csv"))
    folder = FolderReader(manifests, fast_settings())
    first = folder.read(settle=False)
    write_atomic(manifests / "a.yaml", csv_manifest("a", data / "b.csv"))
    write_atomic(manifests / "b.yaml", csv_manifest("b", data / "b.csv"))

    targeted = folder.read(settle=False, changed={real(manifests / "a.yaml")})
    assert not targeted.full
    assert targeted.loaded.resources["a"].file_path == data / "b.csv"  # type: ignore[attr-defined]
    # b was not named: not looked at, the very same version as before.
    assert targeted.desired.versions["b"] is first.desired.versions["b"]

    full = folder.read(settle=False)
    assert full.full
    assert full.loaded.resources["b"].file_path == data / "b.csv"  # type: ignore[attr-defined]


def test_an_event_it_cannot_attribute_scans_the_folder(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    folder = FolderReader(manifests, fast_settings())
    folder.read(settle=False)
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "a.csv"))
    # An ignore file changed, the folder itself, a .git appearing: the rules may have changed.
    for event in (manifests / ".xresourceignore", manifests, manifests / ".git"):
        assert folder.read(settle=False, changed={real(event)}).full
    # Inside a hidden folder or outside the folder: nothing listed can live there.
    hidden = folder.read(settle=False, changed={real(manifests / ".git" / "index"), "/elsewhere/x.yaml"})
    assert not hidden.full


def test_a_folder_with_links_is_scanned_on_every_event(tmp_path: Path, data: Path) -> None:
    volume = ConfigMapDir(tmp_path / "config")
    volume.update({"a.yaml": csv_manifest("a", data / "a.csv")})
    folder = FolderReader(volume.folder, fast_settings())
    folder.read(settle=False)
    volume.update({"a.yaml": csv_manifest("a", data / "b.csv")})
    # The swap changes no visible name: the watcher reports only ..data paths.
    snapshot = folder.read(settle=False, changed={real(volume.folder / "..data")})
    assert snapshot.full
    assert snapshot.loaded.resources["a"].file_path == data / "b.csv"  # type: ignore[attr-defined]


class Tree:
    """A manifests folder changed at random, reporting the paths a watcher would."""

    NAMES = ["a", "b", "c", "d"]  # few names: duplicates across files happen

    def __init__(self, root: Path, data: Path, rng: random.Random) -> None:
        self.root, self.data, self.rng = root, data, rng
        self.folders = [root]

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.yaml") if ".hidden" not in p.parts)

    def change(self) -> set[Path]:
        rng = self.rng
        kind = rng.choice(["write", "write", "write", "delete", "folder", "move", "drop", "ignore", "link"])
        folder = rng.choice(self.folders)
        if kind == "write" or (kind in ("delete", "link") and not self.files()):
            path = rng.choice([*self.files(), folder / f"{rng.choice(self.NAMES)}{rng.randint(0, 3)}.yaml"])
            text = self.manifest()
            if rng.random() < 0.5:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(text)
                os.replace(tmp, path)
                return {path, tmp}
            path.write_text(text)
            return {path}
        if kind == "delete":
            path = rng.choice(self.files())
            path.unlink()
            return {path}
        if kind == "link":  # a second name for a file: listed once
            source = rng.choice(self.files())
            target = folder / f"hard{rng.randint(0, 99)}.yaml"
            if target.exists():
                return set()
            os.link(source, target)
            return {target}
        if kind == "folder":
            new = folder / f"sub{rng.randint(0, 99)}"
            if new.exists():
                return set()
            new.mkdir()
            (new / "x.yaml").write_text(self.manifest())
            self.folders.append(new)
            return {new, new / "x.yaml"}
        if kind == "ignore":
            path = folder / ".xresourceignore"
            path.write_text(rng.choice(["", "a*.yaml\n", "sub*/\n", "!a1.yaml\nb*\n"]))
            return {path}
        movable = [f for f in self.folders if f != self.root]
        if not movable:
            return set()
        moved = rng.choice(movable)
        below = [f for f in self.folders if f == moved or moved in f.parents]
        self.folders = [f for f in self.folders if f not in below]
        if kind == "drop":
            touched = {moved, *moved.rglob("*")}
            shutil.rmtree(moved)
            return touched
        new = moved.with_name(f"moved{rng.randint(0, 99)}")
        if new.exists():
            self.folders += below
            return set()
        moved.rename(new)
        self.folders += [new / f.relative_to(moved) for f in below]
        return {moved, new}

    def manifest(self) -> str:
        name = self.rng.choice(self.NAMES)
        if self.rng.random() < 0.15:
            return f"name: {name}\ntype: csv\nfile_pth: x.csv\n"  # a problem
        return csv_manifest(name, self.data / "a.csv", f"description: v{self.rng.randint(0, 9)}")


def views(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "versions": hashes(snapshot),
        "names_by_file": {f: sorted(n) for f, n in snapshot.desired.names_by_file.items()},
        "problems": sorted((p.file, p.line or 0, p.message) for p in snapshot.desired.problems),
    }


@pytest.mark.parametrize("seed", range(6))
def test_targeted_reads_agree_with_a_full_scan(tmp_path: Path, data: Path, seed: int) -> None:
    root = tmp_path / "resources.d"
    root.mkdir()
    tree = Tree(root, data, random.Random(seed))
    folder = FolderReader(root, fast_settings())
    folder.read(settle=False)
    for step in range(40):
        events = {real(p) for p in tree.change()}
        targeted = folder.read(settle=False, changed=events)
        fresh = FolderReader(root, fast_settings()).read(settle=False)
        assert views(targeted) == views(fresh), f"seed {seed}, step {step}"


# ---- through a real watcher -----------------------------------------------------------------------


@pytest.fixture
async def watching(manifests: Path, data: Path) -> AsyncIterator[Registry]:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "sub").mkdir()
    (manifests / "sub" / "b.yaml").write_text(csv_manifest("b", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings(settle_ms=0)) as registry:
        yield registry


@pytest.mark.usefixtures("identity_decides")
async def test_an_edit_of_the_same_size_and_mtime_is_seen_by_the_watcher(
    watching: Registry, manifests: Path, data: Path
) -> None:
    path = manifests / "a.yaml"
    old = watching.get("a")
    before = path.stat()
    text = csv_manifest("a", data / "b.csv")
    assert len(text) == before.st_size
    with path.open("r+") as handle:  # in place: the same inode
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime as it was (a coarse clock)
    new = await swapped(watching, "a", old)
    assert new.file_path == data / "b.csv"


@pytest.mark.usefixtures("identity_decides")
async def test_a_file_replaced_by_rename_and_one_in_a_sub_folder_are_seen(
    watching: Registry, manifests: Path, data: Path
) -> None:
    a, b = watching.get("a"), watching.get("b")
    write_atomic(manifests / "a.yaml", csv_manifest("a", data / "b.csv"))
    assert (await swapped(watching, "a", a)).file_path == data / "b.csv"
    (manifests / "sub" / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    assert (await swapped(watching, "b", b)).file_path == data / "b.csv"


async def test_added_and_removed_files_and_folders_are_seen(
    watching: Registry, manifests: Path, data: Path
) -> None:
    (manifests / "c.yaml").write_text(csv_manifest("c", data / "a.csv"))
    await eventually(lambda: "c" in watching, what="c added")
    new = manifests / "new"
    new.mkdir()
    (new / "d.yaml").write_text(csv_manifest("d", data / "a.csv"))
    await eventually(lambda: "d" in watching, what="d added in a new folder")
    (manifests / "c.yaml").unlink()
    await eventually(lambda: "c" not in watching, what="c removed")
    new.rename(manifests / "renamed")
    await eventually(
        lambda: watching.status()["d"].path == str(manifests / "renamed" / "d.yaml"), what="d moved"
    )
    shutil.rmtree(manifests / "sub")
    await eventually(lambda: sorted(watching.names()) == ["a", "d"], what="sub removed")


async def test_an_ignore_file_in_a_sub_folder_is_applied(watching: Registry, manifests: Path) -> None:
    (manifests / "sub" / ".xresourceignore").write_text("b.yaml\n")
    await eventually(lambda: "b" not in watching, what="b ignored")
    (manifests / "sub" / ".xresourceignore").unlink()
    await eventually(lambda: "b" in watching, what="b back")


async def test_a_configmap_swap_seen_by_the_watcher_replaces_only_what_changed(
    tmp_path: Path, data: Path
) -> None:
    volume = ConfigMapDir(tmp_path / "config")
    volume.update({"a.yaml": csv_manifest("a", data / "a.csv"), "b.yaml": csv_manifest("b", data / "a.csv")})
    async with Registry(volume.folder, watch=True, settings=fast_settings()) as registry:
        a, b = registry.get("a"), registry.get("b")
        volume.update(
            {"a.yaml": csv_manifest("a", data / "a.csv"), "b.yaml": csv_manifest("b", data / "b.csv")}
        )
        await swapped(registry, "b", b)
        assert registry.get("a") is a


async def test_a_rotated_secret_is_seen_by_the_watcher(
    tmp_path: Path, manifests: Path, api: ApiServer
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    token = secrets / "token"
    token.write_text("token-one")
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        old = registry.get("api")
        write_atomic(token, "token-two")
        new = await swapped(registry, "api", old)
        assert (await new.get(""))["authorization"] == "Bearer token-two"


async def test_a_secret_referenced_by_the_settings_defaults_is_followed(
    tmp_path: Path, manifests: Path, api: ApiServer
) -> None:
    """The manifest's text holds no reference; the defaults merged into it do."""
    token = tmp_path / "token"
    token.write_text("token-one")
    settings = fast_settings()
    settings.resources["rest_api"] = {"auth_params": {"bearer_token": f"${{file:{token}}}"}}
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, settings=settings) as registry:
        old = registry.get("api")
        token.write_text("token-two")
        assert (await registry.reload()).replaced == ["api"]
        assert (await registry.get("api").get(""))["authorization"] == "Bearer token-two"
        assert registry.get("api") is not old
