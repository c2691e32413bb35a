"""``xresource validate --preflight``: every reference would resolve here, and no value is shown.

The files are real: a missing one, a folder, a FIFO (which must not hang the
check), a device, an oversized one, one outside the allowed roots, an
unreadable one, and a symlink to a good one (as Kubernetes mounts secrets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xresource.cli.main import main
from xresource.manifests.preflight import check_reference
from xresource.settings import RegistrySettings, Settings

SECRET_VALUE = "s3cr3t-value-never-printed"  # what the output must never contain


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "db_password").write_text(SECRET_VALUE + "\n")
    (folder / "big").write_bytes(b"x" * 70_000)
    (folder / "a_folder").mkdir()
    os.mkfifo(folder / "fifo")
    (folder / "..data").mkdir()
    (folder / "..data" / "token").write_text(SECRET_VALUE)
    (folder / "token").symlink_to(folder / "..data" / "token")
    return folder


def manifest(tmp_path: Path, secrets: Path) -> Path:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "orders.yaml").write_text(
        "name: orders\n"
        "type: postgresql\n"
        "connection_string: postgresql://app:${env:XR_PREFLIGHT_DB_PW}@db:5432/app\n"
        "options:\n"
        f"  application_name: ${{file:{secrets}/token}}\n"
    )
    (folder / "api.yaml").write_text(
        "name: api\n"
        "type: rest_api\n"
        "endpoint: https://${env:XR_PREFLIGHT_API_HOST}/v1\n"
        "auth_params:\n"
        f"  bearer_token: ${{file:{secrets}/db_pasword}}\n"  # the typo CI used to miss
        "headers:\n"
        f"  X-Api-Key: ${{file:{secrets}/a_folder}}\n"
        f"  X-Other: ${{file:{secrets}/big}}\n"
    )
    return folder


def test_a_typo_in_a_file_reference_and_an_unset_variable_fail(
    tmp_path: Path, secrets: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = manifest(tmp_path, secrets)
    monkeypatch.setenv("XR_PREFLIGHT_DB_PW", SECRET_VALUE)
    monkeypatch.delenv("XR_PREFLIGHT_API_HOST", raising=False)
    code, out = run(capsys, "validate", str(folder))
    # Validation alone reads no secret: it sees only what a look at the path shows (a folder).
    assert code == 1, out
    assert f"headers.X-Api-Key: {secrets}/a_folder is a folder" in out
    assert "db_pasword" not in out
    code, out = run(capsys, "validate", "--preflight", str(folder))
    assert code == 1
    api = folder / "api.yaml"
    assert out.splitlines() == [
        f"{api}:3:11: api: endpoint: environment variable 'XR_PREFLIGHT_API_HOST' is not set",
        f"{api}:5:17: api: auth_params.bearer_token: secret file '{secrets}/db_pasword' does not exist",
        f"{api}:7:14: api: headers.X-Api-Key: {secrets}/a_folder is a folder; only a regular file can be read",
        f"{api}:8:12: api: headers.X-Other: secret file '{secrets}/big' is 70,000 bytes; the limit is 65,536"
        " ([registry] max_secret_bytes)",
        "invalid: 2 files, 1 resource, 4 problems in 1 file",  # api is invalid without reading
    ]
    assert SECRET_VALUE not in out


def test_all_resolvable_passes_in_every_format(
    tmp_path: Path, secrets: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "orders.yaml").write_text(
        "name: orders\ntype: postgresql\n"
        f"connection_string: postgresql://app:${{file:{secrets}/db_password}}@${{env:XR_PF_HOST}}:5432/app\n"
    )
    monkeypatch.setenv("XR_PF_HOST", "db")
    assert run(capsys, "validate", "--preflight", str(folder))[0] == 0
    monkeypatch.delenv("XR_PF_HOST")
    code, out = run(capsys, "validate", "--preflight", "--format", "json", str(folder))
    assert code == 1
    [problem] = json.loads(out)["problems"]
    assert problem["code"] == "preflight"
    assert (problem["line"], problem["field"]) == (3, "connection_string")
    code, out = run(capsys, "validate", "--preflight", "--format", "github", str(folder))
    assert out.startswith(f"::error file={folder / 'orders.yaml'},line=3,col=20,title=xresource orders.connection_string::")


def test_invalid_manifests_are_preflighted_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every problem at once: a broken document's references are checked as well."""
    (tmp_path / "bad.yaml").write_text("name: bad\ntype: postgresql\nmax_pool_size: many\n"
                                       "connection_string: postgresql://${env:XR_PF_NOT_SET}@db/app\n")
    code, out = run(capsys, "validate", "--preflight", str(tmp_path))
    assert code == 1
    assert "bad: max_pool_size: " in out
    assert f"{tmp_path / 'bad.yaml'}:4:20: bad: connection_string: environment variable 'XR_PF_NOT_SET' is not set" in out


def test_allowed_roots_and_settings(
    tmp_path: Path, secrets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "pw").write_text(SECRET_VALUE)
    folder = tmp_path / "resources.d"
    folder.mkdir()
    (folder / "a.yaml").write_text(
        f"name: a\ntype: postgresql\nconnection_string: postgresql://app@db/app\npassword: ${{file:{outside}/pw}}\n"
    )
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[registry]\nallowed_roots = ["{secrets}"]\n')
    code, out = run(capsys, "--settings", str(settings), "validate", "--preflight", str(folder))
    assert code == 1
    assert f"is outside the allowed roots ({secrets})" in out
    assert SECRET_VALUE not in out


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("{secrets}/db_password", None),
        ("{secrets}/token", None),  # a symlink into ..data, as Kubernetes mounts secrets
        ("{secrets}/a_folder", "is a folder, not a regular file"),
        ("{secrets}/fifo", "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
        ("{secrets}/nope", "does not exist"),
        ("{secrets}/big", "the limit is 65,536"),
    ],
)
def test_check_reference_files(secrets: Path, target: str, expected: str | None) -> None:
    problem = check_reference("file", target.format(secrets=secrets), Settings())
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


def test_unreadable_file(secrets: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: permissions cannot make one unreadable")
    locked = secrets / "locked"
    locked.write_text(SECRET_VALUE)
    locked.chmod(0)
    problem = check_reference("file", str(locked), Settings())
    assert problem is not None
    assert "cannot be opened (Permission denied)" in problem


def test_an_empty_allowed_roots_list_allows_anywhere(secrets: Path) -> None:
    settings = Settings(registry=RegistrySettings(allowed_roots=[]))
    assert check_reference("file", str(secrets / "db_password"), settings) is None


def test_entrypoint_use_gates_the_app(tmp_path: Path, secrets: Path) -> None:
    """In a container entrypoint: `xresource validate --preflight DIR && exec app`."""
    folder = manifest(tmp_path, secrets)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XR_PREFLIGHT")}
    xresource = Path(sys.executable).parent / "xresource"
    script = f"{xresource} validate --preflight {folder} && echo app-started"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1
    assert "app-started" not in result.stdout
    assert "XR_PREFLIGHT_DB_PW' is not set" in result.stdout
