"""A third-party type, installed through the ``xresource.resource_types`` entry point, is known
to every tool: validate, schema, init, the docs reference and stubs (docs/adding-a-type.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A tiny third-party resource type: one backend module, nothing else."""

from typing import ClassVar, Literal

from pydantic import Field

from xresource import FileResource


class LinesResource(FileResource):
    """A text file read as a list of lines."""

    type: Literal["lines"] = "lines"
    example_name: ClassVar[str | None] = "release_notes"
    file_suffix: ClassVar[str] = "txt"

    marker: str = Field(default="#", examples=["//"])
    """Lines starting with this are comments and skipped."""

    def _read_sync(self) -> list[str]:
        text = self.file_path.read_text(encoding="utf-8")
        return [line for line in text.splitlines() if not line.startswith(self.marker)]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder on ``sys.path`` holding the plugin module and its dist-info, as pip would install it."""
    root = tmp_path_factory.mktemp("site")
    (root / "acme_lines.py").write_text(PLUGIN)
    dist = root / "acme_lines-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-lines\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[xresource.resource_types]\nlines = acme_lines:LinesResource\n")
    return root


def run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(site), "COLUMNS": "100"},
        timeout=120,
    )


def cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(site, "-m", "xresource.cli.main", *args, cwd=cwd)


def test_validate_knows_the_type(site: Path, tmp_path: Path) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (tmp_path / "notes.txt").write_text("# title\nfirst\n")
    (folder / "notes.yaml").write_text("name: notes\ntype: lines\nfile_path: ../notes.txt\n")
    done = cli(site, tmp_path, "validate", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    (folder / "bad.yaml").write_text("name: bad\ntype: lines\nfile_path: x.txt\nmarkr: '//'\n")
    done = cli(site, tmp_path, "validate", str(folder))
    assert done.returncode == 1
    assert "markr: unknown field; did you mean 'marker'?" in done.stdout + done.stderr


def test_schema_knows_the_type(site: Path, tmp_path: Path) -> None:
    done = cli(site, tmp_path, "schema", "--out", "schemas")
    assert done.returncode == 0, done.stderr
    schema = json.loads((tmp_path / "schemas" / "lines.schema.json").read_text())
    assert schema["properties"]["marker"]["examples"] == ["//"]
    assert (
        schema["properties"]["marker"]["description"] == "Lines starting with this are comments and skipped."
    )
    union = (tmp_path / "schemas" / "resource.schema.json").read_text()
    assert '"lines"' in union


def test_init_writes_a_valid_skeleton(site: Path, tmp_path: Path) -> None:
    done = cli(site, tmp_path, "init", "resources.d/notes.yaml", "--type", "lines")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "resources.d" / "notes.yaml").read_text()
    assert "type: lines" in text
    assert "file_path: data/notes.txt" in text  # the type's own file suffix
    assert "marker" in text
    (tmp_path / "resources.d" / "data").mkdir()
    done = cli(site, tmp_path, "validate", "resources.d")
    assert done.returncode == 0, done.stdout + done.stderr


def test_docs_reference_knows_the_type(site: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "scripts")!r})
        import gen_docs
        pages = gen_docs.render_all()
        print(pages[gen_docs.REFERENCE / "lines.md"])
        print("NAV", "reference/lines.md" in pages[gen_docs.MKDOCS])
        """
    )
    done = run(site, "-c", code, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    page = done.stdout
    assert page.startswith("# `lines`")
    assert 'title="resources.d/release_notes.yaml"' in page  # the type's own example name
    assert "marker: //" in page  # the field's example
    assert "| `marker` | string |" in page
    assert "NAV True" in page


def test_stubs_know_the_type(site: Path, tmp_path: Path) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (tmp_path / "notes.txt").write_text("a\n")
    (folder / "notes.yaml").write_text("name: notes\ntype: lines\nfile_path: ../notes.txt\n")
    done = cli(site, tmp_path, "stubs", str(folder), "--out", "-")
    assert done.returncode == 0, done.stderr
    assert "from acme_lines import LinesResource" in done.stdout
    assert 'def get(self, name: Literal["notes"]) -> LinesResource: ...' in done.stdout


def test_the_type_reads_through_the_registry(site: Path, tmp_path: Path) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (tmp_path / "notes.txt").write_text("# title\nfirst\nsecond\n")
    (folder / "notes.yaml").write_text("name: notes\ntype: lines\nfile_path: ../notes.txt\n")
    code = textwrap.dedent(
        """
        import asyncio
        from xresource import Registry

        async def main():
            async with Registry("resources.d") as registry:
                print(await registry.get("notes").read())

        asyncio.run(main())
        """
    )
    done = run(site, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['first', 'second']"
