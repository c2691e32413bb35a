"""Files a hostile manifest points at: FIFOs, devices, sockets, links out of the allowed roots.

``validate``, ``ls`` and ``plan`` read no secret at all; the registry reads only
regular files within the allowed roots and up to a size cap. Whatever a
manifest names, every command finishes quickly with a located error, never a
hang, never an exhausted memory, never the content of the file it pointed at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from xresource.cli.main import main
from xresource.errors import ManifestError, XResourceSecretError
from xresource.factory import ResourceFactory
from xresource.registry import Registry
from xresource.safe_files import FilePolicy
from xresource.settings import RegistrySettings, Settings

CLI = [sys.executable, "-m", "xresource.cli.main"]
KINDS = ("fifo", "dev_zero", "dev_urandom", "socket", "link_out_of_roots")  # keys of the fixture


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder: a Unix socket path must fit in 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="xr-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hostile(short_tmp: Path) -> Iterator[dict[str, Path]]:
    """One hostile target per kind; the allowed root is ``short_tmp/allowed``."""
    allowed = short_tmp / "allowed"
    allowed.mkdir()
    fifo = allowed / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(allowed / "sock"))
    link = allowed / "passwd"
    link.symlink_to("/etc/passwd")
    try:
        yield {
            "fifo": fifo,
            "dev_zero": Path("/dev/zero"),
            "dev_urandom": Path("/dev/urandom"),
            "socket": allowed / "sock",
            "link_out_of_roots": link,
        }
    finally:
        sock.close()


def _settings_file(folder: Path, allowed: Path) -> Path:
    path = folder / "settings.toml"
    path.write_text(f'[registry]\nallowed_roots = ["{allowed}", "{folder / "m"}", "/dev"]\n')
    return path


def _secret_manifest(folder: Path, target: Path, kind: str = "db") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{kind}.yaml"
    path.write_text(
        f"name: {kind}\ntype: postgresql\nconnection_string: postgresql://app@127.0.0.1:1/app\n"
        f"password: ${{file:{target}}}\n"
    )
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # The timeout is a hang guard: a FIFO read would block forever, /dev/zero fill memory.
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(120)
def test_validate_and_ls_refuse_secret_references_to_non_files(hostile: dict[str, Path], short_tmp: Path) -> None:
    folder = short_tmp / "m"
    manifests = {kind: _secret_manifest(folder, target, kind) for kind, target in hostile.items()}
    settings = _settings_file(short_tmp, short_tmp / "allowed")
    for command in ("validate", "ls"):
        proc = _run("--settings", str(settings), command, str(folder))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        for kind, manifest in manifests.items():
            assert f"{manifest}:4:" in out, f"{kind}: {out}"  # file:line of the password field
        assert "Traceback" not in out
        assert "internal error" not in out
        assert "root:x:0:0" not in out


@pytest.mark.timeout(120)
def test_declared_schemas_pointing_at_non_files_are_located_errors(
    hostile: dict[str, Path], short_tmp: Path
) -> None:
    folder = short_tmp / "m"
    folder.mkdir()
    for kind, target in hostile.items():
        (folder / f"{kind}.yaml").write_text(
            f"# yaml-language-server: $schema={target}\nname: {kind}\ntype: csv\nfile_path: a.csv\n"
        )
    settings = _settings_file(short_tmp, short_tmp / "allowed")
    proc = _run("--settings", str(settings), "validate", str(folder))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    for kind in hostile:
        assert f"{folder / kind}.yaml:2:" in out, f"{kind}: {out}"
    assert out.count("declared schema") == len(hostile), out
    assert "root:x:0:0" not in out
    assert "Traceback" not in out


def test_a_declared_schema_never_echoes_the_file_it_points_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A "schema" that is some other JSON file (a credentials file, say) is not quoted back."""
    (tmp_path / "creds.json").write_text('{"type": "SECRET-VALUE-4711"}')
    (tmp_path / "enum.json").write_text('{"properties": {"name": {"enum": ["SECRET-VALUE-4712"]}}}')
    (tmp_path / "broken.json").write_text('{"token": "SECRET-VALUE-4713",')
    for schema in ("creds.json", "enum.json", "broken.json"):
        (tmp_path / f"{schema}.yaml").write_text(
            f"# yaml-language-server: $schema={schema}\nname: a{len(schema)}\ntype: csv\nfile_path: a.csv\n"
        )
    assert main(["validate", "--format", "json", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.count("declared schema") >= 3, out.out
    assert "SECRET-VALUE" not in out.out + out.err


def test_a_huge_declared_schema_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    (tmp_path / "a.yaml").write_text("# yaml-language-server: $schema=big.json\nname: a\ntype: csv\nfile_path: a.csv\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "a.yaml:2:1: a: $schema: declared schema" in capsys.readouterr().out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
async def test_registry_start_refuses_a_secret_reference_to_a_non_file(
    kind: str, hostile: dict[str, Path], short_tmp: Path
) -> None:
    manifest = _secret_manifest(short_tmp / "m", hostile[kind])
    settings = Settings(registry=RegistrySettings(allowed_roots=[short_tmp / "allowed", Path("/dev")]))
    with pytest.raises(ManifestError) as caught:
        await Registry(manifest.parent, settings=settings).start()
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(manifest), 4, "password")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", KINDS)
async def test_connect_refuses_what_became_a_non_file_after_loading(
    kind: str, hostile: dict[str, Path], short_tmp: Path
) -> None:
    """The checks at load are advice; the open at connect is what holds (a file can change)."""
    resource = ResourceFactory.create(
        "rest_api", name="api", endpoint="http://127.0.0.1:1/", auth_params={"bearer_token": f"${{file:{hostile[kind]}}}"}
    )
    resource.bind_file_policy(FilePolicy((short_tmp / "allowed", Path("/dev"))))
    with pytest.raises(XResourceSecretError) as caught:
        await resource.connect()
    message = str(caught.value)
    assert "auth_params.bearer_token" in message
    assert "not a regular file" in message or "outside the allowed roots" in message
    assert "root:x:0:0" not in message
