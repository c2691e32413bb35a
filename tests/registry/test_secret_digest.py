"""The registry's secret-file digests: regular files only, under a size cap, never a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xresource.registry.secret_files import digests, secret_references
from xresource.safe_files import FilePolicy

MAX_SECRET_BYTES = FilePolicy().max_secret_bytes


def _digest(path: Path | str, roots: list[Path] | None = None) -> str:
    policy = FilePolicy(allowed_roots=tuple(roots or ()))
    return digests([str(path)], policy, {})[f"${{file:{path}}}"]


def test_references_are_found_anywhere_in_the_fields() -> None:
    fields = {"a": "x${file:/run/one}y", "b": {"c": ["${file:/run/two}", "${env:NOT_A_FILE}"]}, "n": 5}
    assert secret_references(fields) == ["/run/one", "/run/two"]


def test_a_rotated_file_changes_its_digest(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("one")
    first = _digest(secret)
    secret.write_text("two")
    assert _digest(secret) != first
    assert "one" not in first


@pytest.mark.timeout(10)  # a hang guard: reading a FIFO or /dev/zero would block or never end
@pytest.mark.parametrize("kind", ["fifo", "device", "too-large", "folder"])
def test_what_is_not_a_small_regular_file_is_never_read(tmp_path: Path, kind: str) -> None:
    target: Path
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif kind == "device":
        target = Path("/dev/zero")
    elif kind == "folder":
        target = tmp_path
    else:
        target = tmp_path / "big"
        target.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    digest = _digest(target)
    assert digest.startswith(("refused:", "unreadable:")), digest


def test_allowed_roots_are_checked_on_what_was_opened(tmp_path: Path) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (inside / "link").symlink_to(outside / "secret")
    assert "outside the allowed roots" in _digest(inside / "link", [inside.resolve()])
    assert not _digest(outside / "secret").startswith("refused:")


def test_a_missing_file_has_a_digest_that_says_so(tmp_path: Path) -> None:
    assert _digest(tmp_path / "nope").startswith(("refused:", "unreadable:"))
