"""``.xresourceignore`` and the default ignores, through every way files are found.

Folders in git hold more than manifests: Kustomize files, drafts, notes. The
rules are gitignore's (via pathspec): the same for a folder scan, for file names
given on the command line (what pre-commit and ``git diff | xargs`` pass), for
every command and for the live registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xresource.cli.main import main
from xresource.manifests import load_manifests
from xresource.manifests.scan import iter_manifest_files
from xresource.registry.registry import Registry
from xresource.settings import RegistrySettings, Settings

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n"


def csv_manifest(name: str) -> str:
    return f"name: {name}\ntype: csv\nfile_path: data.csv\n"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifests folder with Kustomize files, a dotfile, drafts and a notes file to ignore."""
    root = tmp_path / "resources.d"
    (root / "drafts").mkdir(parents=True)
    (root / "team").mkdir()
    (root / "data.csv").write_text("id\n1\n")
    (root / "team" / "data.csv").write_text("id\n1\n")
    (root / "orders.yaml").write_text(csv_manifest("orders"))
    (root / "kustomization.yaml").write_text(KUSTOMIZATION)
    (root / "team" / "kustomization.yml").write_text(KUSTOMIZATION)
    (root / ".editor.yaml").write_text("not: a manifest\n")
    (root / "drafts" / "wip.yaml").write_text("name: wip\ntype: csv\n")  # invalid: no file_path
    (root / "team" / "users.yaml").write_text(csv_manifest("users"))
    (root / "team" / "notes.yaml").write_text("- not a manifest\n")
    (root / ".xresourceignore").write_text("# drafts are not deployed\ndrafts/\nnotes.yaml\n")
    return root


def names(paths: list[Path], base: Path) -> list[str]:
    return [p.relative_to(base).as_posix() for p in paths]


def test_folder_scan_skips_defaults_and_ignored(folder: Path) -> None:
    assert names(list(iter_manifest_files([folder])), folder) == ["orders.yaml", "team/users.yaml"]


def test_validate_and_ls_honour_the_rules(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == "valid: 2 files, 2 resources, 0 problems in 0 files"
    assert main(["ls", "--format", "json", str(folder)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in listed) == ["orders", "users"]


def test_named_files_follow_the_same_rules(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pre-commit passes every changed YAML file by name: ignored ones must be skipped, not read."""
    given = [folder / "kustomization.yaml", folder / "drafts" / "wip.yaml", folder / "team" / "notes.yaml",
             folder / ".editor.yaml", folder / "team" / "users.yaml"]
    assert main(["validate", *map(str, given)]) == 0
    assert capsys.readouterr().out.strip() == "valid: 1 file, 1 resource, 0 problems in 0 files"


def test_negation_re_includes_a_default(folder: Path) -> None:
    (folder / "kustomization.yaml").write_text(csv_manifest("kustomization"))
    (folder / ".xresourceignore").write_text("drafts/\nnotes.yaml\n!/kustomization.yaml\n")
    found = names(list(iter_manifest_files([folder])), folder)
    assert found == ["kustomization.yaml", "orders.yaml", "team/users.yaml"]


def test_a_deeper_ignore_file_wins_and_patterns_are_relative_to_it(folder: Path) -> None:
    (folder / "team" / ".xresourceignore").write_text("!notes.yaml\nusers.yaml\n")
    (folder / "team" / "notes.yaml").write_text(csv_manifest("notes"))
    assert names(list(iter_manifest_files([folder])), folder) == ["orders.yaml", "team/notes.yaml"]
    # Anchored in team/, "/users.yaml" does not reach the top folder.
    (folder / "users.yaml").write_text(csv_manifest("top_users"))
    assert "users.yaml" in names(list(iter_manifest_files([folder])), folder)


def test_an_ignored_folder_cannot_be_re_included_below(folder: Path) -> None:
    (folder / ".xresourceignore").write_text("drafts/\n!drafts/wip.yaml\n")
    assert "drafts/wip.yaml" not in names(list(iter_manifest_files([folder])), folder)


def test_unusable_patterns_are_skipped_like_git_does(folder: Path) -> None:
    (folder / ".xresourceignore").write_text("!\nfoo\\\ndrafts/\n\n   \n#notes.yaml\n")
    assert names(list(iter_manifest_files([folder])), folder) == [
        "orders.yaml", "team/notes.yaml", "team/users.yaml"
    ]


def test_an_unreadable_ignore_file_ignores_nothing_extra(folder: Path) -> None:
    (folder / ".xresourceignore").write_bytes(b"\xff\xfe drafts/\n")
    assert "drafts/wip.yaml" in names(list(iter_manifest_files([folder])), folder)


def test_a_fifo_or_folder_named_like_the_ignore_file_is_not_read(folder: Path) -> None:
    """A hostile change must not hang the scan: only a regular file is read."""
    (folder / ".xresourceignore").unlink()
    os.mkfifo(folder / ".xresourceignore")
    (folder / "team" / ".xresourceignore").mkdir()
    found = names(list(iter_manifest_files([folder])), folder)
    assert found == ["drafts/wip.yaml", "orders.yaml", "team/notes.yaml", "team/users.yaml"]


def test_outside_git_a_parent_ignore_file_applies(folder: Path) -> None:
    (folder.parent / ".xresourceignore").write_text("resources.d/orders.yaml\n")
    assert names(list(iter_manifest_files([folder])), folder) == ["team/users.yaml"]


def test_inside_git_nothing_above_the_work_tree_applies(folder: Path) -> None:
    (folder.parent / ".xresourceignore").write_text("orders.yaml\n")
    git(folder, "init", "-q")
    assert "orders.yaml" in names(list(iter_manifest_files([folder])), folder)


def test_git_flow_changed_files_and_the_work_tree_top(tmp_path: Path) -> None:
    """A repository: the top-level ignore file applies to a scan of a subfolder and to changed files."""
    repo = tmp_path / "repo"
    manifests = repo / "config" / "resources.d"
    manifests.mkdir(parents=True)
    (manifests / "data.csv").write_text("id\n1\n")
    (manifests / "orders.yaml").write_text(csv_manifest("orders"))
    (repo / ".xresourceignore").write_text("config/resources.d/legacy-*.yaml\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")

    git(repo, "switch", "-q", "-c", "change")
    (manifests / "kustomization.yaml").write_text(KUSTOMIZATION)
    (manifests / "legacy-users.yaml").write_text("name: users\ntype: nope\n")  # broken, but ignored
    (manifests / "regions.yaml").write_text(csv_manifest("regions"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")

    changed = git(repo, "diff", "--name-only", "main...change", "--", "config/resources.d").split()
    assert sorted(changed) == [
        "config/resources.d/kustomization.yaml",
        "config/resources.d/legacy-users.yaml",
        "config/resources.d/regions.yaml",
    ]
    # What a CI step runs: `git diff --name-only ... | xargs xresource validate`.
    xresource = Path(sys.executable).parent / "xresource"
    result = subprocess.run([xresource, "validate", *changed], cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "valid: 1 file, 1 resource, 0 problems in 0 files"
    result = subprocess.run(
        [xresource, "validate", "config/resources.d"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "valid: 2 files, 2 resources, 0 problems in 0 files"
    # git ignores the same way: a pattern the two tools read differently would show here.
    listed = git(repo, "ls-files", "--cached", "--ignored", "--exclude-from=.xresourceignore")
    assert listed.split() == ["config/resources.d/legacy-users.yaml"]


async def test_the_registry_honours_the_rules_and_sees_edits_to_them(folder: Path) -> None:
    settings = Settings(registry=RegistrySettings(rescan_interval=0, health_interval=0, close_grace=0))
    async with Registry(folder, settings=settings) as registry:
        assert sorted(registry.names()) == ["orders", "users"]
        (folder / ".xresourceignore").write_text("drafts/\nnotes.yaml\nteam/\n")
        await registry.reload()
        assert sorted(registry.names()) == ["orders"]
    assert sorted(load_manifests(folder).resources) == ["orders"]


async def test_a_watching_registry_applies_an_edit_to_the_ignore_file(folder: Path) -> None:
    """Editing .xresourceignore is a change like any other: the watcher rescans."""
    from tests.registry.support import eventually, fast_settings

    async with Registry(folder, watch=True, settings=fast_settings()) as registry:
        assert sorted(registry.names()) == ["orders", "users"]
        (folder / ".xresourceignore").write_text("drafts/\nnotes.yaml\norders.yaml\n")
        await eventually(lambda: sorted(registry.names()) == ["users"], what="orders ignored")
        (folder / ".xresourceignore").unlink()
        (folder / "drafts" / "wip.yaml").unlink()
        (folder / "team" / "notes.yaml").unlink()
        await eventually(lambda: sorted(registry.names()) == ["orders", "users"], what="orders back")
