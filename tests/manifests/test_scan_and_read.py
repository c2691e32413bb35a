"""The scan's rules and the live registry's reading shortcuts, on real files.

The scan lists each file once with its ``stat``, and says when the folder holds links (a
reader must then not trust events alone). The reader skips the walks for ``${...}``
references in a file whose text cannot hold one; an escape must not slip one past.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xresource.errors import ManifestError
from xresource.manifests.scan import list_manifests
from xresource.registry import Registry
from xresource.settings import RegistrySettings, Settings

CSV = "name: {name}\ntype: csv\nfile_path: data.csv\n"


def settings() -> Settings:
    return Settings(registry=RegistrySettings(rescan_interval=0, health_interval=0, close_grace=0))


def relative(root: Path, listed: list[str]) -> list[str]:
    return [os.path.relpath(p, root) for p in listed]


def test_each_file_once_in_folder_order_with_its_stat(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.yaml").write_text(CSV.format(name="x"))
    (tmp_path / "a.yaml").write_text(CSV.format(name="a"))
    (tmp_path / "b.yaml").write_text(CSV.format(name="b"))
    (tmp_path / ".hidden.yaml").write_text(CSV.format(name="h"))
    listing = list_manifests([tmp_path])
    assert relative(tmp_path, [f.path for f in listing.files]) == ["a.yaml", "b/x.yaml", "b.yaml"]
    assert all(f.info is not None and f.info.st_ino == os.stat(f.path).st_ino for f in listing.files)
    assert not listing.linked


def test_links_and_second_names_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.yaml").write_text(CSV.format(name="a"))
    os.link(root / "a.yaml", root / "b.yaml")  # a second name for the same file: listed once
    listing = list_manifests([root])
    assert relative(root, [f.path for f in listing.files]) == ["a.yaml"]
    assert listing.linked

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.yaml").write_text(CSV.format(name="a"))
    os.symlink(plain / "a.yaml", plain / "c.yaml")
    assert list_manifests([plain]).linked


def test_a_dangling_link_or_a_loop_is_listed_for_the_reader_to_report(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.yaml", tmp_path / "dangling.yaml")
    os.symlink(tmp_path / "loop.yaml", tmp_path / "loop.yaml")
    os.symlink(tmp_path, tmp_path / "sub")  # a folder loop: entered once
    listing = list_manifests([tmp_path])
    assert sorted(relative(tmp_path, [f.path for f in listing.files])) == ["dangling.yaml", "loop.yaml"]
    assert all(f.info is None for f in listing.files)


@pytest.mark.timeout(30)
async def test_a_link_to_a_fifo_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "data.csv").write_text("id\n1\n")
    (folder / "a.yaml").write_text(CSV.format(name="a"))
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", folder / "b.yaml")
    with pytest.raises(ManifestError) as caught:
        await Registry(folder, settings=settings()).start()
    [problem] = caught.value.problems
    assert problem.file == str(folder / "b.yaml")
    assert "not a regular file" in problem.message


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("plain.yaml", "${file:/dev/null}"),
        ("escaped.yaml", '"\\x24{file:/dev/null}"'),  # YAML writes "$" from an escape
        ("escaped.toml", '"\\u0024{file:/dev/null}"'),  # so does TOML
    ],
)
async def test_a_reference_written_with_an_escape_is_still_checked(
    tmp_path: Path, name: str, token: str
) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    if name.endswith(".toml"):
        text = f'name = "api"\ntype = "rest_api"\nendpoint = "http://127.0.0.1:1/"\n[auth_params]\nbearer_token = {token}\n'
    else:
        text = f"name: api\ntype: rest_api\nendpoint: http://127.0.0.1:1/\nauth_params:\n  bearer_token: {token}\n"
    (folder / name).write_text(text)
    with pytest.raises(ManifestError) as caught:
        await Registry(folder, settings=settings()).start()
    [problem] = caught.value.problems
    assert problem.field == "auth_params.bearer_token"
    assert "/dev/null is a" in problem.message  # a device: refused at load, never opened
