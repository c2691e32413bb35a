"""The shared transport helpers: URLs with secret references, TLS contexts, backoff, log scrubbing."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from xresource import ResourceFactory
from xresource._transport.backoff import Backoff
from xresource._transport.scrubbing import ScrubbingLogger, guard_logger
from xresource._transport.tls import TlsFields, tls_context
from xresource._transport.urls import add_query_param, parse_url, url_target

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
    insecure = tls_context("insecure", None)
    assert (insecure.check_hostname, insecure.verify_mode) == (False, ssl.CERT_NONE)


def test_require_with_a_ca_file_verifies_the_chain() -> None:
    bundle = Path(ssl.get_default_verify_paths().cafile or _any_ca_bundle())
    context = tls_context("require", bundle.read_text())
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_REQUIRED)


def _any_ca_bundle() -> str:
    import certifi  # installed with the HTTP extras

    return str(certifi.where())


def test_tls_fields_resolve_ca_file_against_the_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resource = ResourceFactory.create(
        "rest_api", name="api", endpoint="https://example.invalid", ca_file="ca.pem"
    )
    with pytest.raises(OSError, match=r"ca_file 'ca\.pem' does not exist"):
        resource.ssl_context(resource)  # connect() translates it into XResourceConnectionError
    insecure = TlsFields(verify_ssl=False)
    with caplog.at_level(logging.WARNING):
        context = insecure.ssl_context(resource)
    assert context.verify_mode == ssl.CERT_NONE
    assert "verification is turned off" in caplog.text


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://:${env:PW}@cache:6380/0", "cache:6380"),
        ("redis://cache", "cache:6379"),
        ("redis://[::1]", "[::1]:6379"),
        ("redis://", "localhost:6379"),
        ("redis://host:notaport", ""),
    ],
)
def test_url_target_never_shows_user_info(url: str, target: str) -> None:
    assert url_target(url, 6379) == target


def test_add_query_param_encodes_the_value() -> None:
    assert add_query_param("https://h/p", "key", "a b&c") == "https://h/p?key=a+b%26c"
    assert add_query_param("https://h/p?x=1", "k", "v") == "https://h/p?x=1&k=v"


def test_backoff_doubles_up_to_the_cap_with_jitter_below_the_ceiling() -> None:
    policy = Backoff(first=0.5, cap=4.0)
    assert [policy.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for attempt in range(1, 50):
        assert policy.ceiling(attempt) / 2 <= policy.delay(attempt) <= policy.ceiling(attempt)
    assert policy.ceiling(10_000) == 4.0  # no overflow for absurd attempt numbers


def test_backoff_without_jitter_and_budget() -> None:
    policy = Backoff(first=1.0, cap=10.0, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.budget(5) == 25.0
    assert policy.budget(0) == 0.0
    assert Backoff(first=1.0, cap=60.0).budget(10**9) > 5e10  # fast for huge budgets
    assert Backoff(first=2.0, cap=60.0, factor=1).budget(10**9) == 2e9


@pytest.mark.parametrize(
    "kwargs",
    [{"first": -1, "cap": 1}, {"first": 1, "cap": 1, "factor": 0.5}, {"first": 1, "cap": 1, "jitter": 2}],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(**kwargs)


class _Owner:
    label = "x resource 'x'"
    manifest_path = None

    def resolve(self, value: str) -> str:
        return value

    def scrub(self, text: str) -> str:
        return text.replace("s3cret", "***")

    def remember_secrets(self, *values: str) -> None:
        pass


def test_scrubbing_logger_and_guard_drop_secrets(caplog: pytest.LogCaptureFixture) -> None:
    owner = _Owner()
    adapter = ScrubbingLogger(logging.getLogger("test.transport.adapter"), owner)
    name = "test.transport.guarded"
    guard_logger(name, owner)
    try:
        with caplog.at_level(logging.DEBUG):
            adapter.debug("header Authorization: %s", "s3cret")
            logging.getLogger(name).info("token=%s", "s3cret")
    finally:
        guard_logger(name, owner, active=False)
    assert "s3cret" not in caplog.text
    assert caplog.text.count("***") == 2
    with caplog.at_level(logging.DEBUG):
        logging.getLogger(name).info("token=%s", "s3cret")
    assert "s3cret" in caplog.text  # the guard stopped with active=False
