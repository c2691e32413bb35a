"""What a manifest writes never becomes a command in CI logs, and small parser traps hold.

A pull request controls names, keys and file names. Printed raw, a newline
followed by ``::error ...`` is a GitHub workflow command (pre-commit in GitHub
Actions prints ``validate``'s default text output); an escape sequence
rewrites the terminal. Every text output escapes control characters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from xresource.cli.main import main
from xresource.manifests import load_manifests

INJECTION = "\n::error file=evil.yaml,line=1::pwned\x1b[2J"


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "key.yaml").write_text(
        f"name: key\ntype: csv\nfile_path: a.csv\n{json.dumps('x' + INJECTION)}: 1\n"
    )
    (folder / "name.yaml").write_text(f"name: {json.dumps('a' + INJECTION)}\ntype: csv\nfile_path: a.csv\n")
    (folder / "type.yaml").write_text(f"name: t\ntype: {json.dumps('csv' + INJECTION)}\nfile_path: a.csv\n")
    (folder / f"file{INJECTION.replace('/', '_')}.yaml").write_text("name: f\ntype: csv\n")
    return folder


def _validate(folder: Path, fmt: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "xresource.cli.main", "validate", "--format", fmt, str(folder)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_text_output_never_starts_a_workflow_command(hostile_folder: Path) -> None:
    out = _validate(hostile_folder, "text")
    lines = out.strip().splitlines()
    assert len(lines) == 5, out  # four problems, one line each, and the summary
    for line in lines[:-1]:
        assert line.startswith(str(hostile_folder)), line
    assert not any(line.lstrip().startswith("::") for line in lines)
    assert "\x1b" not in out
    assert "\\n::error" in out  # shown, escaped: the reader sees what was written


def test_github_output_has_one_command_per_problem(hostile_folder: Path) -> None:
    out = _validate(hostile_folder, "github")
    commands = [line for line in out.splitlines() if line.startswith("::")]
    assert len(commands) == 4, out
    assert all(line.startswith("::error file=") for line in commands)
    assert "\x1b" not in out


def test_junit_output_is_well_formed_xml(hostile_folder: Path) -> None:
    out = _validate(hostile_folder, "junit")
    suite = ET.fromstring(out.encode()).find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "4"


def test_a_toml_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_bytes('\ufeffname = "a"\ntype = "csv"\nfile_path = "a.csv"\n'.encode())
    result = load_manifests(tmp_path)
    assert result.problems == []
    assert list(result.resources) == ["a"]


def test_many_plain_nodes_are_not_an_alias_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tags = ", ".join(f"t{i % 7}" for i in range(60_000))
    (tmp_path / "a.yaml").write_text(f"name: a\ntype: csv\nfile_path: a.csv\ntags: [{tags}]\n")
    assert main(["validate", str(tmp_path)]) == 0, capsys.readouterr().out


def test_a_billion_laughs_is_still_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(levels) + "\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "alias bomb" in capsys.readouterr().out
