"""Static checks as part of the suite: ruff and mypy --strict on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.timeout(300)
def test_ruff() -> None:
    proc = subprocess.run([BIN / "ruff", "check", "xresource", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:]


@pytest.mark.timeout(300)
def test_ruff_format() -> None:
    proc = subprocess.run([BIN / "ruff", "format", "--check", "xresource"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:]


@pytest.mark.timeout(600)
def test_mypy_strict() -> None:
    proc = subprocess.run([BIN / "mypy", "xresource"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:]


@pytest.mark.timeout(300)
def test_import_contracts() -> None:
    """The layers of the package stay layers (contracts in pyproject.toml)."""
    proc = subprocess.run([BIN / "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-5000:]
