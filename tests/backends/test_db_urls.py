"""Connection URLs holding secret references, and the TLS contexts of the SQL backends (no server)."""

from __future__ import annotations

import ssl

import pytest

from xresource.backends.databases._url import parse_url, tls_context

SCHEMES = ("postgresql", "postgres")


def test_references_may_hold_url_syntax() -> None:
    parts = parse_url("postgresql://${env:DB_USER}:${file:/run/secrets/db/pw}@db.internal:6432/app", SCHEMES)
    assert parts.user == "${env:DB_USER}"
    assert parts.password == "${file:/run/secrets/db/pw}"
    assert (parts.host, parts.port, parts.database) == ("db.internal", 6432, "app")
    assert parts.without_password == "postgresql://${env:DB_USER}@db.internal:6432/app"
    assert parts.address(5432) == "db.internal:6432"


def test_defaults_ipv6_query_and_encoding() -> None:
    parts = parse_url("postgres://[::1]/my%20db?sslmode=require&application_name=x", SCHEMES)
    assert (parts.scheme, parts.host, parts.port, parts.user, parts.password) == (
        "postgres",
        "::1",
        None,
        None,
        None,
    )
    assert parts.database == "my db"
    assert parts.query == {"sslmode": "require", "application_name": "x"}
    assert parts.address(5432) == "[::1]:5432"
    assert parts.without_password == "postgres://[::1]/my%20db?sslmode=require&application_name=x"


def test_host_lists_are_kept_as_written() -> None:
    parts = parse_url("postgresql://app@h1:5432,h2:5433/app", SCHEMES)
    assert parts.host is None
    assert parts.address(5432) == "h1:5432,h2:5433"
    assert parts.database == "app"


def test_user_without_password_and_empty_password() -> None:
    assert parse_url("postgresql://app@db/app", SCHEMES).password is None
    assert parse_url("postgresql://app:@db/app", SCHEMES).password is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/app", "must start with postgresql:// or postgres://"),
        ("postgresql//db/app", "must start with"),
        ("postgresql://app:secret@db/app", "literal password"),
        ("postgresql://app:pa$$word@db/app", "literal password"),
        ("postgresql://app:x${env:PW}@db/app", "literal password"),  # a literal glued to a reference
        ("postgresql://app:${env:PW}@db/app", None),
        ("postgresql://app@db:${env:PG_PORT}/app", None),  # a port may be a reference
        ("postgresql://db:0/app", "port"),
        ("postgresql://db:abc/app", "port"),
    ],
)
def test_problems(url: str, message: str | None) -> None:
    if message is None:
        parse_url(url, SCHEMES)
        return
    with pytest.raises(ValueError, match=message):
        parse_url(url, SCHEMES)


def test_tls_contexts_follow_libpq_modes(tmp_path: object) -> None:
    full = tls_context("verify-full", None)
    assert (full.check_hostname, full.verify_mode) == (True, ssl.CERT_REQUIRED)
    ca = tls_context("verify-ca", None)
    assert (ca.check_hostname, ca.verify_mode) == (False, ssl.CERT_REQUIRED)
    require = tls_context("require", None)
    assert (require.check_hostname, require.verify_mode) == (False, ssl.CERT_NONE)
    with pytest.raises(ssl.SSLError):  # CA data (read checked by the resource), not a path
        tls_context("verify-full", "not a certificate")
