"""The pre-commit hooks, run for real by pre-commit against a throwaway git repository.

The hook repository is a commit of this checkout's package and hooks file (so the
test does not depend on what is committed). pre-commit clones it and pip-installs
it into a fresh environment, exactly as for a user; nothing comes from a git host.
That install is most of the run time, and ``pre-commit try-repo`` builds a new
environment on every call (it uses a throwaway store), so the test writes the
configuration try-repo would write (the hook repository pinned at a commit) and
runs ``pre-commit run`` with one store: one install serves every check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xresource.schema import all_schemas

ROOT = Path(__file__).resolve().parents[2]
GOOD = "name: orders\ntype: csv\nfile_path: ../data/orders.csv\n"
BAD = (
    "name: users\ntype: postgresql\nconnection_string: postgresql://app@db/app\nmax_pool_size: many\nfoo: 1\n"
)
MODELINE = "# yaml-language-server: $schema=../schemas/resource.schema.json\n"
# Not a manifest: the hook's default `files` pattern must leave it alone.
WORKFLOW = "name: ci\non: [push]\njobs: {}\n"

pytestmark = pytest.mark.slow


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def hook_repository(where: Path) -> Path:
    """A git repository with the package and the hooks file as they are in this checkout."""
    repo = where / "xresource-hooks"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    for extra in ROOT.glob("LICENSE*"):
        shutil.copy2(extra, repo / extra.name)
    shutil.copytree(ROOT / "xresource", repo / "xresource", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", repo / "schemas")  # the wheel ships them as xresource/schemas
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hooks")
    return repo


def rev_parse(repo: Path) -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def user_repository(where: Path) -> Path:
    """A good manifest, a bad one in another resources.d, a workflow file and one stale schema."""
    repo = where / "user"
    (repo / "resources.d").mkdir(parents=True)
    (repo / "bad" / "resources.d").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "data" / "orders.csv").write_text("id\n1\n")
    # With the modeline `xresource init` writes: validated against the installed package's schemas.
    (repo / "resources.d" / "orders.yaml").write_text(MODELINE + GOOD)
    (repo / "bad" / "resources.d" / "users.yaml").write_text(BAD)
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text(WORKFLOW)
    (repo / "schemas").mkdir()
    for name, text in all_schemas().items():
        (repo / "schemas" / name).write_text(text)
    (repo / "schemas" / "csv.schema.json").write_text("{}\n")  # stale: the models say otherwise
    git(repo, "init", "-q")
    git(repo, "add", "-A")  # pre-commit works on what git tracks
    return repo


class PreCommit:
    """``pre-commit run`` in the user repository, with one store for every call."""

    def __init__(self, where: Path) -> None:
        hooks = hook_repository(where)
        self.repo = user_repository(where)
        config = {
            "repos": [
                {
                    "repo": str(hooks),
                    "rev": rev_parse(hooks),
                    "hooks": [{"id": "xresource-validate"}, {"id": "xresource-schema-check"}],
                }
            ]
        }
        self.config = where / "pre-commit-config.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PRE_COMMIT", "XRESOURCE_", "VIRTUAL_ENV"))
        }
        self.env["PRE_COMMIT_HOME"] = str(where / "store")
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        self.first: subprocess.CompletedProcess[str] | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pre_commit",
                "run",
                "--config",
                str(self.config),
                "--color",
                "never",
                *args,
            ],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=110,
            check=False,
        )


@pytest.fixture(scope="module")
def pre_commit(tmp_path_factory: pytest.TempPathFactory) -> PreCommit:
    runner = PreCommit(tmp_path_factory.mktemp("precommit"))
    # The first call installs the hook environment (pip install of the hook repository).
    runner.first = runner.run("--all-files")
    output = runner.first.stdout + runner.first.stderr
    assert "Installing environment" in output, output
    return runner


def status_line(output: str, title: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(title))


def test_all_files_fails_on_the_bad_manifest_only(pre_commit: PreCommit) -> None:
    result = pre_commit.first
    assert result is not None
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert status_line(out, "xresource validate.").endswith("Failed")
    assert "bad/resources.d/users.yaml:4:16: users: max_pool_size: " in out
    assert "bad/resources.d/users.yaml:5:1: users: foo: unknown field" in out
    assert "invalid: 2 files, 1 resource, 2 problems in 1 file" in out  # the good one was checked too
    assert "orders.yaml:" not in out
    assert "ci.yml" not in out  # not under a resources.d folder: not a manifest, not checked


def test_good_manifest_passes(pre_commit: PreCommit) -> None:
    result = pre_commit.run(
        "xresource-validate", "--files", "resources.d/orders.yaml", ".github/workflows/ci.yml"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert status_line(result.stdout, "xresource validate.").endswith("Passed")


def test_stale_schemas_fail_the_schema_check(pre_commit: PreCommit) -> None:
    result = pre_commit.first
    assert result is not None
    assert status_line(result.stdout, "xresource schema check.").endswith("Failed")
    assert "schemas/csv.schema.json: stale or missing; run: xresource schema --out schemas" in result.stdout
    assert "mysql.schema.json" not in result.stdout  # the current ones pass


def test_installed_package_ships_the_committed_schemas(pre_commit: PreCommit) -> None:
    """The wheel pre-commit installed carries schemas/ inside the package, byte for byte."""
    store = Path(pre_commit.env["PRE_COMMIT_HOME"])
    (shipped,) = store.glob("repo*/py_env-*/lib/python*/site-packages/xresource/schemas")
    committed = {p.name: p.read_bytes() for p in (ROOT / "schemas").glob("*.json")}
    assert {p.name: p.read_bytes() for p in shipped.glob("*.json")} == committed
    assert "resource.schema.json" in committed


def test_hook_files_are_valid_for_pre_commit() -> None:
    for command, name in (
        ("validate-manifest", ".pre-commit-hooks.yaml"),
        ("validate-config", ".pre-commit-config.yaml"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pre_commit", command, str(ROOT / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
