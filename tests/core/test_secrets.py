"""Secret references: resolution at connect, literal secrets rejected, values never printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from xresource.errors import XResourceSecretError
from xresource.safe_files import FilePolicy, RefusedFileError, read_secret_file, secret_files_digest
from xresource.secrets import (
    HeaderMap,
    OptionsMap,
    Secret,
    SecretText,
    UrlText,
    mask_url_password,
    referenced_files,
    resolve,
    scrub,
)


class Model(BaseModel):
    password: SecretText | None = None
    url: UrlText | None = None
    options: OptionsMap = {}
    headers: HeaderMap = {}


@pytest.mark.parametrize(
    "fields",
    [
        {"password": "hunter2"},
        {"url": "postgresql://app:hunter2@db:5432/app"},
        {"url": "redis://:hunter2@cache:6379/0"},
        {"url": "postgresql://app:hunter2$$x@db/app"},
        {"url": "mongodb://u:hunter2@h1,h2/db?replicaSet=x"},
        {"options": {"sasl_plain_password": "hunter2"}},
        {"options": {"api_key": "hunter2"}},
        {"headers": {"Authorization": "Bearer hunter2"}},
        {"headers": {"X-Api-Key": "hunter2"}},
    ],
)
def test_literal_secrets_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        Model(**fields)  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value).split("input_value")[0]
    assert "${env:" in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"password": "${env:DB_PASSWORD}"},
        {"password": "${file:/run/secrets/db}"},
        {"url": "postgresql://app:${env:PW}@db:5432/app"},
        {"url": "postgresql://${env:USER}:${env:PW}@db/app"},
        {"url": "postgresql://app@db:5432/app"},
        {"url": "http://example.test/a:b@c"},
        {"options": {"acks": "all", "password": "${env:X}"}},
        {"headers": {"Authorization": "Bearer ${env:TOKEN}", "Accept": "application/json"}},
    ],
)
def test_references_and_secret_free_values_pass(fields: dict[str, object]) -> None:
    Model(**fields)  # type: ignore[arg-type]


def test_resolve_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XR_TEST_PW", "s3cr3t-env")
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cr3t-file\n")
    found: list[str] = []
    value = resolve(f"u:${{env:XR_TEST_PW}}/${{file:{secret_file}}}", owner="r", found=found)
    assert value == "u:s3cr3t-env/s3cr3t-file"
    assert found == ["s3cr3t-env", "s3cr3t-file"]
    assert referenced_files([{"a": [f"${{file:{secret_file}}}"]}]) == {secret_file}


def test_unresolvable_references_name_the_reference_not_a_value(tmp_path: Path) -> None:
    with pytest.raises(XResourceSecretError, match="XR_NOT_SET_ANYWHERE"):
        resolve("${env:XR_NOT_SET_ANYWHERE}", owner="postgresql resource 'db'")
    with pytest.raises(XResourceSecretError, match="cannot be opened"):
        resolve(f"${{file:{tmp_path / 'missing'}}}", owner="r")


def test_secret_never_prints() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret!r} {secret}"
    assert secret.get_secret_value() == "hunter2"


def test_scrub_removes_values_and_url_passwords() -> None:
    text = "failed for postgresql://app:hunter2@db/x with token abcdef"
    cleaned = scrub(text, ["abcdef", "hunter2"])
    assert "hunter2" not in cleaned
    assert "abcdef" not in cleaned
    assert mask_url_password("amqp://guest:guest@h:5672/") == "amqp://guest:***@h:5672/"


# ---- the safe reader (xresource.safe_files) -----------------------------------------------


def test_secret_files_are_capped_and_must_be_utf8(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(XResourceSecretError, match="2048 bytes; the limit is 1024"):
        resolve(f"${{file:{big}}}", owner="r", policy=FilePolicy(max_secret_bytes=1024))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00hunter2")
    with pytest.raises(XResourceSecretError, match="is not UTF-8 text") as caught:
        resolve(f"${{file:{binary}}}", owner="r")
    assert "hunter2" not in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RefusedFileError, match="is a FIFO, not a regular file"):
        read_secret_file(fifo, FilePolicy())  # no writer: a plain open() would block forever
    with pytest.raises(RefusedFileError, match="is a character device"):
        read_secret_file("/dev/zero", FilePolicy())
    with pytest.raises(RefusedFileError, match="is a folder"):
        read_secret_file(tmp_path, FilePolicy())


def test_roots_are_checked_at_every_open_on_what_is_opened(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("not for you")
    secret = root / "pw"
    secret.write_text("pw-one")
    policy = FilePolicy((root,))
    assert read_secret_file(secret, policy) == "pw-one"
    secret.unlink()
    secret.symlink_to(outside)  # swapped after it was first read
    with pytest.raises(RefusedFileError, match="outside the allowed roots"):
        read_secret_file(secret, policy)
    # A link that stays inside the roots is followed (Kubernetes secret volumes are links).
    (root / "..data").mkdir()
    (root / "..data" / "pw").write_text("pw-two")
    secret.unlink()
    secret.symlink_to(root / "..data" / "pw")
    assert read_secret_file(secret, policy) == "pw-two"


def test_a_root_that_is_a_link_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "pw").write_text("pw")
    (tmp_path / "alias").symlink_to(real)
    assert read_secret_file(tmp_path / "alias" / "pw", FilePolicy((tmp_path / "alias",))) == "pw"


def test_unresolvable_file_reference_names_manifest_line_and_field(tmp_path: Path) -> None:
    from xresource.manifests import load_manifests

    (tmp_path / "api.yaml").write_text(
        "name: api\ntype: rest_api\nendpoint: http://127.0.0.1:1/\n"
        f"auth_params:\n  bearer_token: ${{file:{tmp_path / 'nope'}}}\n"
    )
    resource = load_manifests(tmp_path).resources["api"]
    with pytest.raises(XResourceSecretError) as caught:
        resource.resolve(resource.auth_params.bearer_token)  # type: ignore[attr-defined]
    assert f"{tmp_path / 'api.yaml'}:1: field auth_params.bearer_token: secret file" in str(caught.value)


def test_secret_digest_changes_with_content_and_never_raises(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("one")
    first = secret_files_digest([secret], FilePolicy())
    secret.write_text("two")
    second = secret_files_digest([secret], FilePolicy())
    secret.unlink()
    os.mkfifo(secret)
    third = secret_files_digest([secret], FilePolicy())
    assert len({first, second, third}) == 3
