"""What a cold ``xresource validate`` loads: the speed of the pre-commit hook comes from not loading things.

Each test runs the real CLI in a fresh interpreter and lists the modules it
imported; timings live in ``benchmarks/bench_validate.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xresource import packaged_schemas

ROOT = Path(__file__).resolve().parents[2]
PG = "name: orders\ntype: postgresql\nconnection_string: postgresql://app@db:5432/app\n"
CSV = "name: regions\ntype: csv\nfile_path: regions.csv\n"

PROBE = """
import json, sys
from xresource.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_cold(*args: str) -> tuple[int, set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    *printed, last = proc.stdout.strip().splitlines()
    report = json.loads(last)
    return report["code"], set(report["modules"]), "\n".join(printed) + proc.stderr


def modeline(manifest: Path) -> str:
    import os

    target = ROOT / "schemas" / "resource.schema.json"
    return f"# yaml-language-server: $schema={os.path.relpath(target, manifest.parent)}\n"


def test_modeline_to_the_shipped_schema_generates_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "orders.yaml"
    manifest.write_text(modeline(manifest) + PG)
    code, modules, output = run_cold("validate", str(manifest))
    assert code == 0, output
    assert "xresource.schema" not in modules  # no schema generated from the models
    assert "xresource.docstrings" not in modules
    assert "jsonschema" not in modules  # the declared schema is ours: the models already said it all
    # Only the model of the type present, and no other command's machinery.
    backends = {m for m in modules if m.startswith("xresource.backends.") and m.count(".") == 3}
    # The type's own module and its family's private helpers (``_base``, ...), nothing else.
    assert {m for m in backends if not m.rsplit(".", 1)[1].startswith("_")} == {
        "xresource.backends.databases.postgresql"
    }
    assert all(m.startswith("xresource.backends.databases.") for m in backends)
    assert not {m for m in modules if m.startswith(("xresource.registry", "xresource.server"))}
    assert "xresource.cli.plan_cmd" not in modules
    assert "asyncpg" not in modules
    # Validation needs no event loop, logging, TOML (a YAML file) or layered settings.
    assert not {"asyncio", "ssl", "logging", "tomllib", "dynaconf"} & modules


def test_files_and_databases_validate_without_asyncio(tmp_path: Path) -> None:
    """The file and database families import asyncio where they use it, not at the top."""
    (tmp_path / "orders.yaml").write_text(PG)
    (tmp_path / "regions.yaml").write_text(CSV)
    (tmp_path / "regions.csv").write_text("id\n1\n")
    (tmp_path / "cities.yaml").write_text("name: cities\ntype: json\nfile_path: regions.csv\n")
    code, modules, output = run_cold("validate", str(tmp_path))
    assert code == 0, output
    assert "asyncio" not in modules


def test_validate_reports_a_typo_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "orders.yaml").write_text(PG + "max_pool_sise: 5\n")
    code, _, output = run_cold("validate", str(tmp_path))
    assert code == 1
    assert "unknown field; did you mean 'max_pool_size'?" in output


def test_validate_does_not_scan_for_pydantic_plugins(tmp_path: Path) -> None:
    """A cold run does not scan installed distributions for plugins (a user's setting wins)."""
    manifest = tmp_path / "orders.yaml"
    manifest.write_text(PG)
    probe = (
        "import sys; from xresource.cli.main import main; main(sys.argv[1:]); "
        "from pydantic.plugin import _loader; print(_loader._plugins is None)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-c", probe, "validate", str(manifest)], capture_output=True, text=True, env=env
    )
    assert proc.stdout.splitlines()[-1] == "True"  # never scanned
    proc = subprocess.run(
        [sys.executable, "-c", probe, "validate", str(manifest)],
        capture_output=True,
        text=True,
        env={**env, "PYDANTIC_DISABLE_PLUGINS": ""},
    )
    assert proc.stdout.splitlines()[-1] == "False"  # scanned: the user asked for plugins


def test_each_type_present_loads_its_own_backend_only(tmp_path: Path) -> None:
    (tmp_path / "orders.yaml").write_text(PG)
    (tmp_path / "regions.yaml").write_text(CSV)
    (tmp_path / "regions.csv").write_text("id\n1\n")
    code, modules, output = run_cold("validate", str(tmp_path))
    assert code == 0, output
    loaded = {
        m.rsplit(".", 1)[-1] for m in modules if m.startswith("xresource.backends.") and m.count(".") == 3
    }
    # Family-private helpers (``_base``, ``_columns``, ...) may load; no other type's backend does.
    assert {m for m in loaded if not m.startswith("_")} == {"postgresql", "csv"}


def test_a_reformatted_copy_of_the_shipped_schema_counts_as_shipped(tmp_path: Path) -> None:
    """A schema written by another tool (other indentation, key order) is still ours."""
    shipped = json.loads((ROOT / "schemas" / "resource.schema.json").read_text())
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "resource.schema.json").write_text(json.dumps(shipped, indent=4, sort_keys=True))
    manifest = tmp_path / "r" / "orders.yaml"
    manifest.parent.mkdir()
    manifest.write_text("# yaml-language-server: $schema=../schemas/resource.schema.json\n" + PG)
    code, modules, output = run_cold("validate", str(manifest))
    assert code == 0, output
    assert "jsonschema" not in modules


def test_an_older_copy_of_our_schema_is_still_enforced(tmp_path: Path) -> None:
    """A declared schema that differs from the shipped one is checked with it (it may say more)."""
    schema = json.loads((ROOT / "schemas" / "resource.schema.json").read_text())
    schema["required"] = [*schema["required"], "description"]
    (tmp_path / "resource.schema.json").write_text(json.dumps(schema, indent=2))
    manifest = tmp_path / "orders.yaml"
    manifest.write_text("# yaml-language-server: $schema=resource.schema.json\n" + PG)
    code, modules, output = run_cold("validate", str(manifest))
    assert code == 1
    assert "'description' is a required property (declared schema resource.schema.json)" in output
    assert "jsonschema" in modules


def test_the_shipped_schemas_are_the_committed_ones() -> None:
    """In a source checkout the package reads schemas/; a wheel carries a copy (tests/cli/test_precommit.py)."""
    folder = packaged_schemas.schema_dir()
    assert folder is not None
    assert folder.samefile(ROOT / "schemas")
    union = packaged_schemas.union_schema()
    assert union is not None
    assert union.name == "resource.schema.json"


@pytest.mark.parametrize("argv", [["--help"], ["--settings", "x.toml", "--help"], ["nope"]])
def test_help_and_typos_still_list_every_command(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xresource.cli.main", *argv], capture_output=True, text=True, check=False
    )
    text = proc.stdout + proc.stderr
    for command in ("validate", "schema", "ls", "check", "serve", "plan", "init", "stubs"):
        assert command in text
    assert proc.returncode == (0 if "--help" in argv else 2)


def test_settings_option_before_the_command(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[registry]\nmax_manifest_bytes = 10\n")
    (tmp_path / "orders.yaml").write_text(PG)
    code, _, output = run_cold("--settings", str(settings), "validate", str(tmp_path / "orders.yaml"))
    assert code == 1
    assert "the limit is 10" in output
