"""Secret references: resolution at connect, literal secrets rejected, values never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from xresource.errors import XResourceSecretError
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
    with pytest.raises(XResourceSecretError, match="cannot be read"):
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
