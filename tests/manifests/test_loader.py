"""Manifest loading: formats, folder scan, names, paths, references."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xresource.errors import ManifestError
from xresource.manifests import load_manifests

PG = "connection_string: postgresql://app:${env:ORDERS_PW}@db:5432/app\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_yaml_multi_document_and_toml(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml", f"name: orders\ntype: postgresql\n{PG}---\nname: users\ntype: postgresql\n{PG}"
    )
    write(tmp_path / "sub" / "deeper" / "c.toml", 'name = "sales"\ntype = "csv"\nfile_path = "s.csv"\n')
    write(tmp_path / "b.yml", "---\n# an empty document is fine\n")
    result = load_manifests(tmp_path)
    assert result.ok, result.problems
    assert sorted(result.resources) == ["orders", "sales", "users"]


def test_hidden_entries_skipped_symlinks_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / ".hidden" / "h.yaml", "name: hidden\ntype: csv\nfile_path: x.csv\n")
    write(root / ".h.yaml", "name: dot\ntype: csv\nfile_path: x.csv\n")
    outside = write(tmp_path / "elsewhere" / "linked.yaml", "name: linked\ntype: csv\nfile_path: x.csv\n")
    os.symlink(outside, root / "linked.yaml")
    os.symlink(tmp_path / "elsewhere", root / "linked_dir")  # the same file again through a folder link
    os.symlink(root, root / "loop")  # a loop must not hang the scan
    write(root / "notes.txt", "not a manifest")
    result = load_manifests(root)
    assert result.ok, result.problems
    assert sorted(result.resources) == ["linked"]


def test_relative_file_path_resolves_against_manifest_folder(tmp_path: Path) -> None:
    write(tmp_path / "team" / "m.yaml", "name: sales\ntype: csv\nfile_path: ../data/sales.csv\n")
    resource = load_manifests(tmp_path).resources["sales"]
    assert Path(resource.file_path) == tmp_path / "team" / ".." / "data" / "sales.csv"  # type: ignore[attr-defined]


def test_references_stay_unresolved_until_connect(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", f"name: orders\ntype: postgresql\n{PG}")
    resource = load_manifests(tmp_path).resources["orders"]
    assert "${env:ORDERS_PW}" in resource.connection_string  # type: ignore[attr-defined]
    assert "ORDERS_PW" not in os.environ


def test_problems_carry_file_line_column_resource_and_field(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", f"name: orders\ntype: postgresql\n{PG}tags: [core, 7]\n")
    result = load_manifests(tmp_path)
    [problem] = result.problems
    assert (problem.file, problem.line, problem.column) == (str(tmp_path / "a.yaml"), 4, 14)
    assert (problem.resource, problem.field) == ("orders", "tags[1]")
    with pytest.raises(ManifestError) as info:
        result.raise_for_problems()
    assert info.value.problems == [problem]
    assert f"{tmp_path / 'a.yaml'}:4:14: orders: tags[1]:" in str(info.value)


def test_duplicate_names_across_files_name_both(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", f"name: orders\ntype: postgresql\n{PG}")
    write(tmp_path / "b" / "b.toml", 'name = "orders"\ntype = "csv"\nfile_path = "x.csv"\n')
    result = load_manifests(tmp_path)
    files = sorted(Path(p.file).name for p in result.problems)
    assert files == ["a.yaml", "b.toml"]
    assert "orders" not in result.resources


def test_yaml_merge_keys_are_supported(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml",
        "name: a\ntype: csv\nfile_path: a.csv\n---\nbase: &base {type: csv, delimiter: ';'}\n---\n",
    )
    # A document that is a plain mapping of shared values is still validated like a manifest.
    assert not load_manifests(tmp_path).ok
    write(tmp_path / "a.yaml", "<<: {type: csv, delimiter: ';'}\nname: a\nfile_path: a.csv\n")
    result = load_manifests(tmp_path)
    assert result.ok, result.problems
    assert result.resources["a"].delimiter == ";"  # type: ignore[attr-defined]


def test_large_files_rejected_unread(tmp_path: Path) -> None:
    from xresource.settings import RegistrySettings, Settings

    write(tmp_path / "a.yaml", "name: a\ntype: csv\nfile_path: a.csv\n# " + "x" * 5000 + "\n")
    settings = Settings(registry=RegistrySettings(max_manifest_bytes=1000))
    [problem] = load_manifests(tmp_path, settings).problems
    assert "limit is 1000" in problem.message


def test_fingerprint_follows_content_not_mtime(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "name: a\ntype: csv\nfile_path: a.csv\n")
    first = load_manifests(tmp_path).resources["a"].fingerprint
    path.write_text("name: a\ntype: csv\nfile_path: a.csv\n")
    assert load_manifests(tmp_path).resources["a"].fingerprint == first
    path.write_text("name: a\ntype: csv\nfile_path: a.csv\ndelimiter: ';'\n")
    assert load_manifests(tmp_path).resources["a"].fingerprint != first


@pytest.mark.timeout(10)  # a hang guard: opening a FIFO for reading blocks until a writer comes
def test_loading_reads_no_secret(tmp_path: Path) -> None:
    """validate, ls and plan load manifests: the secret files they name are never opened."""
    secret = write(tmp_path / "secrets" / "pw", "one")
    fifo = tmp_path / "secrets" / "fifo"
    os.mkfifo(fifo)
    write(
        tmp_path / "m" / "a.yaml",
        f"name: orders\ntype: postgresql\nconnection_string: postgresql://app@db/app\n"
        f"password: ${{file:{secret}}}\n---\nname: piped\ntype: postgresql\n"
        f"connection_string: postgresql://app@db/app\npassword: ${{file:{fifo}}}\n",
    )
    first = load_manifests(tmp_path / "m")
    secret.write_text("two")
    second = load_manifests(tmp_path / "m")
    # The FIFO is refused by looking at it (a located problem), never by opening it.
    assert [(p.resource, p.field) for p in first.problems] == [("piped", "password")]
    assert "orders" in first.resources
    # Nothing loading computes depends on the secret's content (the live registry adds that).
    assert first.resources["orders"].fingerprint == second.resources["orders"].fingerprint
    assert first.resources["orders"].manifest_hash == second.resources["orders"].manifest_hash


def test_allowed_roots_confine_data_and_secret_files(tmp_path: Path) -> None:
    from xresource.settings import RegistrySettings, Settings

    data = tmp_path / "data"
    write(tmp_path / "m" / "ok.yaml", f"name: ok\ntype: csv\nfile_path: {data / 'a.csv'}\n")
    write(tmp_path / "m" / "escape.yaml", "name: escape\ntype: csv\nfile_path: ../../../../../etc/passwd\n")
    write(
        tmp_path / "m" / "secret.yaml",
        "name: sec\ntype: postgresql\nconnection_string: postgresql://app@db/app\npassword: ${file:/etc/shadow}\n",
    )
    settings = Settings(registry=RegistrySettings(allowed_roots=[data, tmp_path / "m"]))
    result = load_manifests(tmp_path / "m", settings)
    assert sorted(result.resources) == ["ok"]
    messages = {p.resource: p for p in result.problems}
    assert "outside the allowed roots" in messages["escape"].message
    assert messages["escape"].line == 3
    assert "/etc/shadow" in messages["sec"].message
    assert load_manifests(tmp_path / "m").ok  # no roots configured: no confinement
