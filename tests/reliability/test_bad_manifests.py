"""The bad-manifest corpus: each file is a mistake a careless user or a hostile PR makes.

The first line of each file says what must be reported: ``# expect: LINE TEXT``
(``-`` when the problem has no line). Every case must exit 1 with one clear
line naming the file and line, never a traceback, and quickly (the timeout
marker is a hang guard, not a benchmark).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xresource.cli.main import main

CORPUS = Path(__file__).parent / "bad_manifests"
CASES = sorted(p for p in CORPUS.iterdir() if p.suffix in (".yaml", ".yml", ".toml"))


def _expectation(path: Path) -> tuple[int | None, str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    assert first.startswith("# expect: "), f"{path.name} lacks its expectation line"
    line, _, text = first.removeprefix("# expect: ").partition(" ")
    return (None if line == "-" else int(line)), text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_manifest_is_reported_with_file_and_line(
    case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / case.name
    shutil.copy(case, target)
    line, text = _expectation(case)
    assert main(["validate", "--format", "json", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    problems = report["problems"]
    assert problems, "no problem reported"
    assert all(p["file"] == str(target) for p in problems)
    matching = [p for p in problems if text in " ".join(str(v) for v in p.values())]
    assert matching, f"expected {text!r} in {problems}"
    if line is not None:
        assert line in [p["line"] for p in matching], f"expected line {line} in {matching}"
    assert "hunter2" not in json.dumps(report), "a literal secret was echoed back"


def test_all_problems_at_once_in_text_format(tmp_path: Path) -> None:
    """A user fixing a broken PR sees every problem in one run, one line each."""
    for case in CASES:
        shutil.copy(case, tmp_path / case.name)
    proc = subprocess.run(
        [sys.executable, "-m", "xresource.cli.main", "validate", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("invalid: ")
    named = {Path(line.split(":", 1)[0]).name for line in lines[:-1]}
    assert named == {c.name for c in CASES}
    for line in lines[:-1]:
        assert line.startswith(str(tmp_path)), line
    assert "hunter2" not in proc.stdout + proc.stderr


def test_usage_errors_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xresource.cli.main", "validate", "--format", "yaml", "x"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_missing_path_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert f"xresource validate: error: {tmp_path / 'nope'}: no such file or directory" in capsys.readouterr().err
