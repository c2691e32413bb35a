"""The pytest plugin shipped with the package, used as a project would: pytest runs inside pytest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# Every inner run is a process of its own, as a project's test run is. In-process runs share
# this interpreter's C extensions, which pytester's module cleanup between tests cannot reset
# (libyaml keeps the node classes of the first import; a driver re-imported can crash).

ORDERS_CSV = "id,total\n1,9.50\n"
ORDERS = '{"name": "orders", "type": "csv", "file_path": "orders.csv"}'
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with a data file, in pytest-asyncio's default (strict) mode."""
    pytester.makefile(".csv", orders=ORDERS_CSV)
    pytester.makeini(INI)
    return pytester


def write_tests(pytester: pytest.Pytester, source: str) -> None:
    pytester.makepyfile(test_project="import pytest\n\npytestmark = pytest.mark.asyncio\n\n" + textwrap.dedent(source))


def test_make_registry_builds_from_code_with_test_settings(project: pytest.Pytester) -> None:
    write_tests(
        project,
        f"""
        async def test_orders(make_registry):
            registry = make_registry({ORDERS}, "name: again\\ntype: csv\\nfile_path: orders.csv\\n")
            assert registry.settings.registry.rescan_interval == 0
            assert registry.settings.registry.health_interval == 0
            async with registry:
                assert await registry.get("orders").read() == [{{"id": "1", "total": "9.50"}}]
                assert registry.names() == ["again", "orders"]
        """,
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


def test_the_marker_gives_a_started_registry_that_is_stopped_after_the_test(project: pytest.Pytester) -> None:
    write_tests(
        project,
        f"""
        from xresource.errors import XResourceStateError

        SEEN = []

        @pytest.mark.xresource({ORDERS})
        async def test_uses_it(xresource_registry):
            SEEN.append(xresource_registry)
            assert xresource_registry.status()["orders"].state == "ready"

        async def test_it_was_stopped():
            (registry,) = SEEN
            with pytest.raises(XResourceStateError, match="stopped"):
                registry.get("orders")
        """,
    )
    project.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)


def test_the_ini_option_names_the_folders(project: pytest.Pytester) -> None:
    folder = project.mkdir("resources.d")
    (folder / "orders.yaml").write_text("name: orders\ntype: csv\nfile_path: ../orders.csv\n")
    project.makeini(INI + "xresource_folders = resources.d\n")
    write_tests(
        project,
        """
        async def test_orders(xresource_registry):
            assert await xresource_registry.get("orders").read() == [{"id": "1", "total": "9.50"}]
        """,
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


def test_without_marker_or_ini_the_error_says_what_to_write(project: pytest.Pytester) -> None:
    write_tests(
        project,
        """
        async def test_orders(xresource_registry):
            pass
        """,
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*say which manifests to load, with @pytest.mark.xresource(...)*"])


def test_an_override_lasts_the_test_and_is_undone_even_when_it_fails(project: pytest.Pytester) -> None:
    write_tests(
        project,
        f"""
        from xresource.errors import XResourceNotFoundError

        KEPT = []

        async def test_fails_with_a_fake_in_place(make_registry, xresource_override):
            registry = make_registry({ORDERS})
            KEPT.append(registry)
            await registry.start()
            real = registry.get("orders")
            KEPT.append(real)
            assert xresource_override("orders", "fake") == "fake"
            assert registry.get("orders") == "fake"
            assert await registry.aget("orders") == "fake"
            raise AssertionError("deliberate")

        async def test_the_real_one_is_back():
            registry, real = KEPT
            assert registry.get("orders") is real
            await registry.stop()

        @pytest.mark.xresource({ORDERS})
        async def test_an_unknown_name_is_an_error(xresource_registry, xresource_override):
            with pytest.raises(XResourceNotFoundError, match="did you mean 'orders'"):
                xresource_override("order", "fake")

        async def test_several_registries_need_registry(make_registry, xresource_override):
            first, second = make_registry({ORDERS}), make_registry({ORDERS})
            with pytest.raises(pytest.UsageError, match="several registries"):
                xresource_override("orders", "fake")
            xresource_override("orders", "fake", registry=second)
        """,
    )
    result = project.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: deliberate*"])


def test_fixtures_against_a_real_postgresql(project: pytest.Pytester) -> None:
    write_tests(
        project,
        f"""
        class FakeDb:
            async def fetchval(self, query):
                return "from the fake"

        @pytest.mark.xresource({{"name": "db", "type": "postgresql", "connection_string": "{PG_URL}", "max_pool_size": 2}})
        async def test_real_then_fake(xresource_registry, xresource_override):
            assert await xresource_registry.get("db").fetchval("SELECT 40 + 2") == 42
            xresource_override("db", FakeDb())
            assert await xresource_registry.get("db").fetchval("SELECT 40 + 2") == "from the fake"
            async with xresource_registry.lease("db") as db:
                assert await db.fetchval("SELECT 1") == "from the fake"
        """,
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


def test_without_pytest_asyncio_make_registry_still_works(
    project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Projects on another async runner: the async fixture says what it needs; the factory works."""
    blocker = tmp_path / "blocker" / "pytest_asyncio"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pytest-asyncio is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker.parent))
    project.makepyfile(
        test_project=f"""
        import asyncio

        def test_factory_with_asyncio_run(make_registry):
            async def main():
                async with make_registry({ORDERS}) as registry:
                    return await registry.get("orders").read()

            assert asyncio.run(main()) == [{{"id": "1", "total": "9.50"}}]

        def test_async_fixture(xresource_registry):
            pass
        """
    )
    result = project.runpytest_subprocess("-p", "no:asyncio")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*xresource_registry is an async fixture and needs pytest-asyncio*"])
