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
        # Issue 10.5: literal secrets that used to pass.
        {"url": "postgresql://app@db/x?password=hunter2"},
        {"url": "postgresql://app@db/x?sslmode=require&sslpassword=hunter2"},
        {"url": "redis://127.0.0.1:6379/0?password=hunter2"},
        {"url": "mqtt://127.0.0.1:1883?password=hunter2"},
        {"url": "mongodb://u@h/db?tlsCertificateKeyFilePassword=hunter2"},
        {"url": "https://api.test/v1?api_key=hunter2"},
        {"url": "https://api.test/v1?apikey=hunter2"},
        {"url": "https://api.test/v1?access_token=hunter2"},
        {"url": "https://api.test/v1?sv=2022&sig=hunter2"},
        {"url": "https://api.test/v1?X-Amz-Signature=hunter2"},
        {"url": "https://api.test/v1?key=hunter2"},
        {"url": "https://hunter2@api.test/v1"},
        {"url": "wss://hunter2@api.test/ws"},
        {"url": "postgresql://app:hunter2${env:EMPTY}@db/x"},
        {"url": "postgresql://app:${env:EMPTY}hunter2@db/x"},
        {"password": "hunter2${env:EMPTY}"},
        {"headers": {"Cookie": "session=hunter2"}},
        {"headers": {"X-Access-Key": "hunter2"}},
        {"headers": {"X-Auth": "hunter2"}},
        {"headers": {"X-Private-Key": "hunter2"}},
        {"headers": {"X-Passphrase": "hunter2"}},
        {"headers": {"x-auth-token": "hunter2"}},
        {"options": {"sasl": {"sasl_plain_password": "hunter2"}}},
        {"options": {"login": [{"token": "hunter2"}]}},
        {"options": {"dsn": "postgresql://a:hunter2@h/x"}},
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
        {"url": "postgresql://app@db/x?sslmode=require&sslkey=/certs/client.key"},
        {"url": "postgresql://app@db/x?password=${env:PW}"},
        {"url": "postgresql://app:${file:/run/secrets/pw}@db/x"},
        {"url": "mongodb://u@h/db?authSource=admin&authMechanism=SCRAM-SHA-256"},
        {"url": "https://${env:TOKEN}@api.test/v1"},
        {"url": "https://user:${env:PW}@api.test/v1"},
        {"url": "https://api.test/v1/users/a@b?sort=name"},
        {"password": "${env:A}${file:/run/secrets/b}"},
        {"headers": {"Cookie": ""}},
        {"options": {"routing_key": "orders", "partition_key": "id", "sasl": {"mechanism": "PLAIN"}}},
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
    with pytest.raises(XResourceSecretError, match="does not exist"):
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


ALL_CASES = [
    "postgresql://app:hunter2@db/x", "postgresql://app:hunter2${env:E}@db/x", "postgresql://app:${env:P}@db/x",
    "postgresql://${env:U}:${env:P}@db/x", "postgresql://app:${file:/run/secrets/pw}@db/x",
    "postgresql://app@db/x?password=hunter2", "postgresql://app@db/x?sslkey=/k.pem", "redis://h/0?password=x",
    "https://api.test/v1?api_key=x", "https://api.test/v1?key=${env:K}", "https://TOKEN@api.test/",
    "https://${env:T}@api.test/", "https://api.test/a@b", "mongodb://u@h/db?authSource=admin",
    "postgresql://${vault:x}@db/x", "https://api.test/?sig=${env:S}&sv=1",
]  # fmt: skip


@pytest.mark.parametrize("url", ALL_CASES)
def test_url_schema_and_model_agree(url: str) -> None:
    """The editor (JSON Schema) and the CLI (the model) give the same verdict."""
    import jsonschema

    schema = Model.model_json_schema()
    by_schema = [jsonschema.Draft7Validator(schema).is_valid({"url": url}),
                 jsonschema.Draft202012Validator(schema).is_valid({"url": url})]  # fmt: skip
    try:
        Model(url=url)
        by_model = True
    except ValidationError:
        by_model = False
    assert by_schema == [by_model, by_model]


@pytest.mark.parametrize(
    "headers",
    [{"Cookie": "a=hunter2"}, {"X-Auth": "hunter2"}, {"Authorization": "Bearer ${env:T}"}, {"Accept": "x"}],
)
def test_header_schema_and_model_agree(headers: dict[str, str]) -> None:
    import jsonschema

    schema = Model.model_json_schema()
    try:
        Model(headers=headers)
        by_model = True
    except ValidationError:
        by_model = False
    assert jsonschema.Draft202012Validator(schema).is_valid({"headers": headers}) is by_model


def test_unknown_reference_scheme_is_named_not_called_a_literal() -> None:
    with pytest.raises(ValidationError) as caught:
        Model(password="${vault:secret/db}")
    message = caught.value.errors()[0]["msg"]
    assert "unknown reference scheme 'vault'; use env or file" in message
    assert "literal" not in message


def test_a_literal_password_suggestion_uses_the_urls_own_scheme() -> None:
    for scheme in ("redis", "mqtt", "mysql", "amqp", "mongodb"):
        with pytest.raises(ValidationError) as caught:
            Model(url=f"{scheme}://app:hunter2@h:1/0")
        message = caught.value.errors()[0]["msg"]
        assert f"e.g. {scheme}://app:${{env:DB_PASSWORD}}@host/db" in message
        assert "postgresql://" not in message


def test_a_port_may_be_a_reference() -> None:
    from xresource._transport.urls import parse_url

    parts = parse_url("mysql://root@127.0.0.1:${env:XR_PORT}/test", ("mysql",))
    assert parts.port is None
    assert parts.port_reference == "${env:XR_PORT}"
    assert parts.address(3306) == "127.0.0.1:${env:XR_PORT}"
    with pytest.raises(ValueError, match="the port 'abc") as caught:
        parse_url("mysql://root@127.0.0.1:abc${env:X}/test", ("mysql",))
    assert "\ue000" not in str(caught.value)
    assert "${env:X}" in str(caught.value)  # the reference as written, never a placeholder


async def test_mysql_connects_to_a_port_given_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.services import require_service
    from xresource.factory import ResourceFactory

    require_service("MariaDB", "127.0.0.1", 3306)
    monkeypatch.setenv("XR_TEST_MYSQL_PORT", "3306")
    resource = ResourceFactory.create(
        "mysql", name="db", connection_string="mysql://root@127.0.0.1:${env:XR_TEST_MYSQL_PORT}/test"
    )
    assert resource.target() == "127.0.0.1:${env:XR_TEST_MYSQL_PORT}"
    async with resource:
        assert await resource.fetchval("SELECT 1") == 1
