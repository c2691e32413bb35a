"""``xresource stubs``: the typed module makes mypy know each resource's class, and catch wrong names."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xresource.cli.main import main
from xresource.registry import Registry
from xresource.settings import Settings

POSTGRES = (
    "name: user_db\ntype: postgresql\nconnection_string: postgresql://app:${env:DB_PASSWORD}@db:5432/app\n"
)
CSV = "name: orders\ntype: csv\nfile_path: ../data/orders.csv\n"
KAFKA = "name: events\ntype: kafka\nbootstrap_servers: localhost:9092\n"

GOOD_USE = """
    from xresource import Registry

    from resources_types import RESOURCE_NAMES, ResourceName, typed


    async def main(registry: Registry) -> list[object]:
        users = typed(registry).get("user_db")
        rows = await users.fetch("SELECT * FROM users WHERE active")
        orders = await typed(registry).get("orders").read()
        async with typed(registry).lease("user_db") as db:
            await db.execute("SELECT 1")
        events = await typed(registry).aget("events")
        await events.produce("topic", b"x")
        first: ResourceName = RESOURCE_NAMES[0]
        return [rows, orders, first]
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(cwd: Path, cache: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """The venv's mypy, strict, run where the user's code is (so no project config applies)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), "--no-error-summary", *files],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "resources.d").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text("id,total\n1,9.5\n2,20\n")
    (tmp_path / "resources.d" / "user_db.yaml").write_text(POSTGRES)
    (tmp_path / "resources.d" / "orders.yaml").write_text(CSV)
    (tmp_path / "resources.d" / "events.yaml").write_text(KAFKA)
    return tmp_path


def stubs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["stubs", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source).lstrip())


def test_mypy_passes_on_correct_use(
    project: Path, mypy_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "resources_types.py"
    code, said, _ = stubs(capsys, str(project / "resources.d"), "--out", str(out))
    assert code == 0
    assert "3 resource names" in said
    write(project / "app.py", GOOD_USE)
    result = mypy(project, mypy_cache, "app.py", "resources_types.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_fails_on_a_wrong_name_or_a_wrong_operation(
    project: Path, mypy_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stubs(capsys, str(project / "resources.d"), "--out", str(project / "resources_types.py"))[0] == 0
    write(
        project / "typo.py",
        """
        from xresource import Registry

        from resources_types import typed


        async def main(registry: Registry) -> None:
            await typed(registry).get("user_dbb").fetch("SELECT 1")
            await typed(registry).get("orders").fetch("SELECT 1")
        """,
    )
    result = mypy(project, mypy_cache, "typo.py")
    assert result.returncode == 1, result.stdout
    assert (
        'typo.py:7: error: No overload variant of "get" of "TypedRegistry" matches argument type "str"'
        in (result.stdout)
    )
    assert 'typo.py:8: error: "CsvResource" has no attribute "fetch"' in result.stdout


def test_a_renamed_manifest_breaks_type_checking(
    project: Path, mypy_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "resources_types.py"
    assert stubs(capsys, str(project / "resources.d"), "--out", str(out))[0] == 0
    write(project / "app.py", GOOD_USE)
    assert stubs(capsys, str(project / "resources.d"), "--out", str(out), "--check")[0] == 0

    manifest = project / "resources.d" / "user_db.yaml"
    manifest.write_text(POSTGRES.replace("name: user_db", "name: users_db"))
    code, _, err = stubs(capsys, str(project / "resources.d"), "--out", str(out), "--check")
    assert code == 1
    assert "stale or missing" in err
    assert stubs(capsys, str(project / "resources.d"), "--out", str(out))[0] == 0
    assert 'Literal["users_db"]' in out.read_text()
    result = mypy(project, mypy_cache, "app.py")
    assert result.returncode == 1
    assert "app.py:7: error: No overload variant" in result.stdout


def test_a_single_resource_gets_plain_methods(
    tmp_path: Path, mypy_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "orders.yaml").write_text("name: orders\ntype: csv\nfile_path: orders.csv\n")
    assert stubs(capsys, str(tmp_path / "r"), "--out", str(tmp_path / "single_types.py"))[0] == 0
    text = (tmp_path / "single_types.py").read_text()
    assert "@overload" not in text  # one @overload alone is an error for type checkers
    assert 'RESOURCE_NAMES: tuple[ResourceName, ...] = ("orders",)' in text
    write(
        tmp_path / "use.py",
        """
        from xresource import Registry

        from single_types import typed


        async def ok(registry: Registry) -> object:
            return await typed(registry).get("orders").read()


        def wrong(registry: Registry) -> object:
            return typed(registry).get("order")
        """,
    )
    result = mypy(tmp_path, mypy_cache, "use.py", "single_types.py")
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith(
        'use.py:11: error: Argument 1 to "get" of "TypedRegistry" has incompatible type'
    )


def test_typed_is_the_registry_at_run_time(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "resources.d" / "user_db.yaml").unlink()  # no server needed: file resources only
    (project / "resources.d" / "events.yaml").unlink()
    out = project / "runtime_types.py"
    assert stubs(capsys, str(project / "resources.d"), "--out", str(out))[0] == 0
    spec = importlib.util.spec_from_file_location("runtime_types", out)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.RESOURCE_NAMES == ("orders",)

    async def use() -> list[dict[str, str]]:
        async with Registry(project / "resources.d", settings=Settings()) as registry:
            assert module.typed(registry) is registry
            rows: list[dict[str, str]] = await module.typed(registry).get("orders").read()
            return rows

    assert asyncio.run(use()) == [{"id": "1", "total": "9.5"}, {"id": "2", "total": "20"}]


def test_stdout_and_refusals(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = stubs(capsys, str(project / "resources.d"), "--out", "-")
    assert code == 0
    assert stubs(capsys, str(project / "resources.d"), "--out", "-", "--check")[0] == 2
    assert out.startswith('"""Typed access to the resources under ')
    assert "def typed(registry: Registry) -> TypedRegistry:" in out

    mine = project / "mine.py"
    mine.write_text("x = 1\n")
    code, _, err = stubs(capsys, str(project / "resources.d"), "--out", str(mine))
    assert code == 1
    assert "was not generated by xresource" in err
    assert mine.read_text() == "x = 1\n"

    (project / "resources.d" / "broken.yaml").write_text("name: broken\ntype: csv\n")
    target = project / "never.py"
    code, _, err = stubs(capsys, str(project / "resources.d"), "--out", str(target))
    assert code == 1
    assert "broken.yaml:1:1: broken: file_path: required field is missing" in err
    assert not target.exists()

    (project / "empty").mkdir()
    code, _, err = stubs(capsys, str(project / "empty"), "--out", str(target))
    assert (code, "no resources under" in err, target.exists()) == (1, True, False)
