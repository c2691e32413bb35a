"""rest_api against a real aiohttp server on loopback (tests/support/http_servers.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import ValidationError

from tests.backends.network_contract import NetworkContract
from tests.support import http_servers as hs
from tests.support.services import free_port
from tests.support.waiting import SLACK
from xresource.backends.network import signing
from xresource.backends.network.rest_api import HttpResponse, HttpRuntime, RestApiResource
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceQueryError,
    XResourceRequestError,
    XResourceSecretError,
    XResourceStateError,
    XResourceTimeoutError,
)
from xresource.resource import ManifestOrigin

SECRETS = [hs.BEARER_TOKEN, hs.BASIC_PASSWORD, hs.API_KEY, hs.HMAC_SECRET]


@pytest.fixture
async def server():
    app, state = hs.rest_app()
    running = await hs.start_app(app)
    running.state = state  # type: ignore[attr-defined]
    yield running
    await running.stop()


@pytest.fixture
def state(server):
    return server.state


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv("API_TOKEN", hs.BEARER_TOKEN)
    monkeypatch.setenv("API_PASSWORD", hs.BASIC_PASSWORD)
    monkeypatch.setenv("API_KEY", hs.API_KEY)
    monkeypatch.setenv("API_SIGNING_KEY", hs.HMAC_SECRET)


def make(url: str, **fields) -> RestApiResource:
    fields.setdefault("backoff_factor", 0.01)
    return RestApiResource(name="api", endpoint=url, **fields)


def leaked(text: str) -> list[str]:
    forms = set()
    for secret in SECRETS:
        forms |= {secret, quote(secret, safe=""), quote_plus(secret)}
    return [s for s in forms if s in text]


class TestRestContract(NetworkContract):
    type_name = "rest_api"
    runtime_class = HttpRuntime

    def make(self, url: str, **fields: Any) -> RestApiResource:
        return make(url, **fields)

    async def call(self, res: RestApiResource, path: str, **options: Any) -> Any:
        return await res.get(path, **options)

    def bearer(self) -> dict[str, Any]:
        return {"auth_params": {"bearer_token": "${env:API_TOKEN}"}}


# ---- round trips ----------------------------------------------------------------------------


async def test_each_verb_round_trips_json(server, state):
    async with make(server.url) as api:
        got = await api.get("/echo", params={"q": "a b", "n": 2})
        assert got["method"] == "GET"
        assert got["query"] == {"q": "a b", "n": "2"}
        for verb in ("post", "put", "patch"):
            body = {"verb": verb, "items": [1, 2], "text": "ünïcode"}
            got = await getattr(api, verb)("/echo", body)
            assert got["method"] == verb.upper()
            assert got["body"] == body
            assert got["headers"]["Content-Type"] == "application/json"
        got = await api.delete("/echo/7")
        assert (got["method"], got["path"]) == ("DELETE", "/echo/7")
        got = await api.request("options", "/echo")
        assert got["method"] == "OPTIONS"
        got = await api.post("/echo", data={"a": "1", "b": "x y"})
        assert got["body"] == "a=1&b=x+y"
    assert [r.method for r in state.requests] == [
        "HEAD",
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "POST",
    ]


async def test_paths_are_relative_to_the_endpoint(server, state):
    async with make(f"{server.url}/echo/v1/") as api:
        assert (await api.get("users"))["path"] == "/echo/v1/users"
        assert (await api.get("/users/1"))["path"] == "/echo/v1/users/1"
        assert (await api.get())["path"] == "/echo/v1/"
        assert (await api.get(f"{server.url}/echo/v1/next?page=2"))["query"] == {"page": "2"}
        # A full URL elsewhere would carry our credentials to another service: refused.
        with pytest.raises(ValueError, match="outside"):
            await api.get("http://example.invalid/steal")
        with pytest.raises(ValueError, match="outside"):
            await api.get(f"{server.url}/echo/v2/x")


async def test_endpoint_query_is_kept(server):
    async with make(f"{server.url}/echo?version=3") as api:
        got = await api.get("items", params={"page": 1})
    assert got["query"] == {"version": "3", "page": "1"}


async def test_text_empty_and_raw_answers(server):
    async with make(server.url) as api:
        assert await api.get("/text") == "plain words"
        assert await api.get("/empty") is None
        response = await api.get("/status/418", raw=True)
        assert isinstance(response, HttpResponse)
        assert (response.status, response.ok) == (418, False)
        assert response.json() == {"error": "status 418"}
        assert response.headers["Content-Type"].startswith("application/json")
        with pytest.raises(XResourceRequestError, match="not valid JSON") as info:
            await api.get("/not-json")
        assert info.value.status == 200


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": 1}', {"a": 1}),
        ("application/json; charset=utf-8", b' [1, "\xc3\xa9"] ', [1, "é"]),
        ("Application/JSON;Charset=UTF-8", b'{"a": 1}', {"a": 1}),
        ("application/problem+json", b'{"title": "gone"}', {"title": "gone"}),
        ("application/json", '{"utf16": true}'.encode("utf-16"), {"utf16": True}),  # json.loads reads it
        ("application/json", b'\xef\xbb\xbf{"bom": 1}', {"bom": 1}),
        ("text/plain; charset=latin-1", b'{"looks": "like json"} \xe9', '{"looks": "like json"} é'),
        ("a/b/c+json", b"[1]", "[1]"),  # not a media type: text, as aiohttp reads it
        (None, b"[1]", "[1]"),  # no Content-Type: octet-stream, returned as text
    ],
)
async def test_answers_are_parsed_by_their_content_type(content_type, body, expected):
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        response = web.Response(body=body)
        if content_type is None:
            response.headers.popall("Content-Type", None)
        else:
            response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/", answer)
    running = await hs.start_app(app)
    try:
        async with make(running.url, check_on_connect=False) as api:
            assert await api.get("/") == expected
            response = await api.get("/", raw=True)
            assert response.is_json is isinstance(expected, dict | list)
    finally:
        await running.stop()


async def test_default_headers_and_per_request_headers(server):
    async with make(server.url, headers={"X-Client": "xr", "Accept": "application/json"}) as api:
        got = await api.get("/echo", headers={"X-Trace": "r1", "X-Client": "override"})
    assert got["headers"]["X-Trace"] == "r1"
    assert got["headers"]["X-Client"] == "override"
    assert got["headers"]["Accept"] == "application/json"


async def test_header_values_can_be_references(server):
    async with make(server.url, headers={"X-Api-Key": "${env:API_KEY}"}) as api:
        assert await api.get("/secure/header") == {"ok": True, "kind": "header"}


async def test_pool_limit_bounds_concurrent_requests(server, state):
    async with make(server.url, max_connections=2) as api:
        await asyncio.gather(*(api.get("/slow", params={"delay": 0.15}) for _ in range(5)))
    assert state.max_in_flight == 2


# ---- auth -----------------------------------------------------------------------------------

AUTH_KINDS = {
    "bearer": {"bearer_token": "${env:API_TOKEN}"},
    "basic": {"username": hs.BASIC_USER, "password": "${env:API_PASSWORD}"},
    "header": {"api_key": "${env:API_KEY}", "api_key_header": "X-Api-Key"},
    "query": {"api_key": "${env:API_KEY}", "api_key_query": "key"},
    "hmac": {"hmac_secret": "${env:API_SIGNING_KEY}"},
}


@pytest.mark.parametrize("kind", list(AUTH_KINDS))
async def test_each_auth_kind_is_accepted_by_the_server(server, state, kind):
    async with make(server.url, auth_params=AUTH_KINDS[kind]) as api:
        assert await api.get(f"/secure/{kind}", params={"page": "2", "sort": "a b"}) == {
            "ok": True,
            "kind": kind,
        }
        assert await api.post(f"/secure/{kind}", {"order": 42, "note": "é"}) == {"ok": True, "kind": kind}
        assert await api.delete(f"/secure/{kind}") == {"ok": True, "kind": kind}
        assert api.get_metadata()["auth"] in {"bearer", "basic", "api_key", "hmac"}
    assert len(state.seen(f"/secure/{kind}")) == 3


@pytest.mark.parametrize("kind", list(AUTH_KINDS))
async def test_wrong_credentials_raise_authentication_error(server, monkeypatch, kind):
    for var in ("API_TOKEN", "API_PASSWORD", "API_KEY", "API_SIGNING_KEY"):
        monkeypatch.setenv(var, "wrong-value")
    async with make(server.url, auth_params=AUTH_KINDS[kind]) as api:
        with pytest.raises(XResourceAuthenticationError) as info:
            await api.get(f"/secure/{kind}")
    assert isinstance(info.value, XResourceRequestError)
    assert info.value.status == 401
    assert "wrong-value" not in str(info.value)


async def test_hmac_signature_covers_the_body(server, state):
    async with make(server.url, auth_params={"kind": "hmac", "hmac_secret": "${env:API_SIGNING_KEY}"}) as api:
        await api.put("/secure/hmac", {"a": 1})
    received = state.seen("/secure/hmac")[-1]
    ts, sig = received.headers["X-Timestamp"], received.headers["X-Signature"]
    assert signing.verify(hs.HMAC_SECRET, "PUT", "/secure/hmac", ts, received.body, sig)
    # Any change to the signed parts breaks it.
    assert not signing.verify(hs.HMAC_SECRET, "PUT", "/secure/hmac", ts, b'{"a":2}', sig)
    assert not signing.verify(hs.HMAC_SECRET, "POST", "/secure/hmac", ts, received.body, sig)
    assert not signing.verify(hs.HMAC_SECRET, "PUT", "/secure/hmac", str(int(ts) + 1), received.body, sig)
    assert not signing.verify("other", "PUT", "/secure/hmac", ts, received.body, sig)


def test_hmac_canonical_string_is_as_documented():
    assert (
        signing.canonical_request("post", "/v1/o?x=1", "1700000000", b"{}")
        == b"POST\n/v1/o?x=1\n1700000000\n{}"
    )
    headers = signing.signed_headers("k", "GET", "/p", now=1700000000)
    assert headers["X-Timestamp"] == "1700000000"
    expected = hmac.new(b"k", b"GET\n/p\n1700000000\n", hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == expected
    assert signing.verify("k", "GET", "/p", "1700000000", b"", headers["X-Signature"], now=1700000100)
    assert not signing.verify("k", "GET", "/p", "1700000000", b"", headers["X-Signature"], now=1700001000)
    assert not signing.verify("k", "GET", "/p", "not-a-time", b"", headers["X-Signature"])


async def test_hmac_key_id_and_custom_header_names(server, state):
    params = {
        "hmac_secret": "${env:API_SIGNING_KEY}",
        "signature_header": "X-Sig",
        "timestamp_header": "X-Ts",
        "key_id": "k1",
    }
    async with make(server.url, auth_params=params) as api:
        await api.post("/echo", {"x": 1})
    got = state.seen("/echo")[-1]
    assert got.headers["X-Key-Id"] == "k1"
    assert signing.verify(
        hs.HMAC_SECRET, "POST", "/echo", got.headers["X-Ts"], got.body, got.headers["X-Sig"]
    )


async def test_credentials_in_the_endpoint_url_become_basic_auth(server, monkeypatch):
    url = server.url.replace("://", f"://{hs.BASIC_USER}:${{env:API_PASSWORD}}@")
    async with make(url) as api:
        assert await api.get("/secure/basic") == {"ok": True, "kind": "basic"}
        with pytest.raises(XResourceQueryError) as info:
            await api.get("/status/404")
    assert hs.BASIC_USER + ":" not in str(info.value)
    assert not leaked(str(info.value))


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"bearer_token": "literal-token"}, "must not be written literally"),
        ({"username": "u", "password": "hunter2"}, "must not be written literally"),
        ({"api_key": "${env:K}", "api_key_header": "X-K", "api_key_query": "k"}, "not both"),
        ({"bearer_token": "${env:T}", "username": "u"}, "Extra inputs are not permitted"),
        ({}, "auth needs one kind"),
        ({"kind": "oauth"}, "auth needs one kind"),
        ({"hmac_secret": "${env:K}", "signature_header": "Bad Header"}, "should match pattern"),
        ({"username": "a:b", "password": "${env:P}"}, "should match pattern"),
        ({"bearer_token": ""}, "at least 1 character"),
    ],
)
def test_bad_auth_params_are_rejected(auth, message):
    with pytest.raises(ValidationError, match=message):
        RestApiResource(name="api", endpoint="http://127.0.0.1:1", auth_params=auth)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endpoint": "ftp://host/x"}, "should match pattern"),
        ({"endpoint": "http://user:hunter2@host"}, "literal password"),
        ({"endpoint": "http://u:${env:P}@h", "auth_params": {"bearer_token": "${env:T}"}}, "not both"),
        ({"endpoint": "http://h", "headers": {"Authorization": "Bearer abc"}}, "literal"),
        ({"endpoint": "http://h", "timeout": 0}, "greater than 0"),
        ({"endpoint": "http://h", "retry_methods": ["FETCH"]}, "Input should be"),
        ({"endpoint": "http://h", "max_conections": 3}, "Extra inputs"),
    ],
)
def test_bad_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        RestApiResource(name="api", **fields)


def test_explicit_kind_and_schema():
    api = RestApiResource(
        name="api", endpoint="http://h", auth_params={"kind": "bearer", "bearer_token": "${env:T}"}
    )
    assert api.auth_params is not None
    assert api.auth_params.kind == "bearer"
    schema = RestApiResource.model_json_schema()
    assert "auth_params" in schema["properties"]
    assert {"BearerTokenAuth", "BasicAuth", "ApiKeyAuth", "HmacAuth"} <= set(schema["$defs"])


async def test_missing_secret_fails_connect(server, monkeypatch):
    monkeypatch.delenv("API_TOKEN")
    api = make(server.url, auth_params={"bearer_token": "${env:API_TOKEN}"})
    with pytest.raises(XResourceSecretError, match="API_TOKEN"):
        await api.connect()


async def test_requests_need_a_connected_resource(server):
    api = make(server.url)
    with pytest.raises(XResourceStateError):
        await api.get("/echo")
    async with api:
        pass
    with pytest.raises(XResourceStateError):
        await api.get("/echo")


# ---- errors and retries ---------------------------------------------------------------------


async def test_404_is_a_query_error_with_status(server, state):
    async with make(server.url) as api:
        with pytest.raises(XResourceQueryError) as info:
            await api.get("/status/404")
    assert info.value.status == 404
    assert not isinstance(info.value, XResourceConnectionError)  # retrying will not help
    assert "GET" in str(info.value)
    assert "/status/404" in str(info.value)
    assert "404" in str(info.value)
    assert "rest_api resource 'api'" in str(info.value)
    assert state.attempts["/status/404"] == 1  # client errors are not retried


async def test_retries_503_then_succeeds(server, state):
    async with make(server.url, retries=3) as api:
        assert await api.get("/flaky/2") == {"attempts": 3}
        assert api.request_stats["retries"] == 2
    assert state.attempts["/flaky/2"] == 3


async def test_retries_give_up_with_the_last_status(server, state):
    async with make(server.url, retries=1) as api:
        with pytest.raises(XResourceRequestError) as info:
            await api.get("/flaky/5")
    assert info.value.status == 503
    assert state.attempts["/flaky/5"] == 2


async def test_zero_retries_means_one_attempt(server, state):
    async with make(server.url, retries=0) as api:
        with pytest.raises(XResourceRequestError):
            await api.get("/flaky/1")
        assert state.attempts["/flaky/1"] == 1
        assert await api.get("/flaky/2", retries=2) == {"attempts": 3}  # per-request override


async def test_502_is_retried_for_idempotent_methods_only(server, state):
    async with make(server.url, retries=2) as api:
        with pytest.raises(XResourceRequestError):
            await api.post("/bad-gateway", {"charge": 10})
        assert state.attempts["/bad-gateway"] == 1  # the server may have charged already
        with pytest.raises(XResourceRequestError):
            await api.get("/bad-gateway")
        assert state.attempts["/bad-gateway"] == 4
        # 503 means "not processed": safe to retry whatever the method.
        assert await api.post("/flaky/1", {"charge": 10}) == {"attempts": 2}


async def test_retry_after_seconds_is_honoured(server, state):
    state.retry_after = "1"
    async with make(server.url, backoff_factor=0) as api:
        assert await api.get("/throttled") == {"attempts": 2}
    first, second = state.attempt_times["/throttled"]
    assert 0.95 <= second - first < 1.0 + SLACK


async def test_retry_after_http_date_is_honoured(server, state):
    state.retry_after = formatdate(time.time() + 2, usegmt=True)
    async with make(server.url, backoff_factor=0) as api:
        assert await api.get("/throttled") == {"attempts": 2}
    first, second = state.attempt_times["/throttled"]
    assert 0.9 <= second - first < 2.0 + SLACK


async def test_retry_after_is_capped(server, state):
    state.retry_after = "3600"
    async with make(server.url, max_retry_after=0.2) as api:
        assert await api.get("/throttled") == {"attempts": 2}
    first, second = state.attempt_times["/throttled"]
    assert 0.15 <= second - first < 0.2 + SLACK  # far below the 3600 s asked for


async def test_garbage_retry_after_falls_back_to_backoff(server, state):
    state.retry_after = "soon-ish"
    async with make(server.url, backoff_factor=0.01) as api:
        assert await api.get("/throttled") == {"attempts": 2}
    first, second = state.attempt_times["/throttled"]
    assert second - first < 0.01 + SLACK  # the backoff, not a misread Retry-After


async def test_timeout_raises_timeout_error_without_retry(server, state):
    async with make(server.url, timeout=0.2, retries=3) as api:
        started = time.monotonic()
        with pytest.raises(XResourceTimeoutError, match=r"within 0\.2s"):
            await api.get("/slow", params={"delay": 5})
        assert time.monotonic() - started < 0.2 + SLACK  # gave up at the timeout, not at the answer
        with pytest.raises(XResourceTimeoutError, match=r"within 0\.1s"):
            await api.get("/slow", params={"delay": 5}, timeout=0.1)
        assert await api.get("/slow", params={"delay": 0.01}) == {"slow": True}
    assert state.attempts["/slow"] == 3


async def test_connection_refused_fails_connect():
    api = make(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(XResourceConnectionError) as info:
        await api.connect()
    assert not isinstance(info.value, XResourceTimeoutError | XResourceRequestError)
    assert api.state.value == "failed"


async def test_connection_refused_is_retried_then_raised(caplog):
    caplog.set_level(logging.INFO, "xresource")
    api = make(f"http://127.0.0.1:{free_port()}", check_on_connect=False, retries=2)
    async with api:
        with pytest.raises(XResourceConnectionError, match="after 3 attempts") as info:
            await api.get("/x")
    assert type(info.value) is XResourceConnectionError
    assert api.request_stats == {"requests": 3, "retries": 2, "failures": 1}
    assert caplog.text.count("retry") == 2


async def test_validate_connection(server):
    async with make(server.url) as api:
        assert await api.validate_connection() is True
        await server.stop()
        assert await api.validate_connection() is False
        assert api.last_error is not None
    async with make(server.url, check_on_connect=False, health_path="/broken") as api:
        assert await api.validate_connection() is False


async def test_validate_connection_counts_client_errors_as_reachable(server):
    async with make(server.url, health_path="/status/404", health_method="GET") as api:
        assert await api.validate_connection() is True


async def test_server_error_at_connect_fails_connect(server):
    api = make(server.url, health_path="/broken")
    with pytest.raises(XResourceRequestError) as info:
        await api.connect()
    assert info.value.status == 500


# ---- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(AUTH_KINDS))
async def test_secrets_never_leak(server, caplog, kind):
    caplog.set_level(logging.DEBUG)
    api = make(server.url, auth_params=AUTH_KINDS[kind], retries=1)
    outputs = [repr(api), str(api.get_metadata()), api.model_dump_json()]
    async with api:
        outputs += [repr(api), str(api.get_metadata()), str(api.model_dump())]
        with pytest.raises(XResourceQueryError) as info:
            await api.get("/leaky", params={"note": "x"})
        outputs.append(str(info.value))
        with pytest.raises(XResourceRequestError) as info:
            await api.get("/flaky/9")  # retried: the retry is logged with the URL
        outputs.append(str(info.value))
        outputs.append(str(await api.get("/leaky", raw=True)))
    outputs.append(caplog.text)
    for text in outputs:
        assert not leaked(text), text


async def test_api_key_query_is_masked_in_messages(server, caplog):
    caplog.set_level(logging.INFO, "xresource")
    auth = {"api_key": "${env:API_KEY}", "api_key_query": "key"}
    async with make(server.url, auth_params=auth, retries=1) as api:
        with pytest.raises(XResourceRequestError) as info:
            await api.get("/flaky/5", params={"page": 1})
    assert "key=***" in str(info.value)
    assert "page=1" in str(info.value)
    assert "key=***" in caplog.text


async def test_driver_errors_holding_the_key_are_not_chained(server, state):
    auth = {"api_key": "${env:API_KEY}", "api_key_query": "key"}
    async with make(server.url, auth_params=auth) as api:
        with pytest.raises(XResourceConnectionError, match="redirect") as info:
            await api.get("/redirect-loop")
    # aiohttp's TooManyRedirects names the URL, key and all: it must not ride along.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert not leaked(str(info.value))
    assert len(state.seen("/redirect-loop")) == 10  # aiohttp stops at 10 requests; not retried


async def test_driver_errors_without_secrets_stay_chained():
    async with make(f"http://127.0.0.1:{free_port()}", check_on_connect=False, retries=0) as api:
        with pytest.raises(XResourceConnectionError) as info:
            await api.get("/x")
    assert isinstance(info.value.__cause__, OSError)


# ---- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return hs.make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_server(certificate):
    app, _ = hs.rest_app()
    running = await hs.start_app(app, ssl_context=hs.server_ssl_context(*certificate))
    yield running
    await running.stop()


async def test_https_with_ca_file(tls_server, certificate):
    async with make(tls_server.url, ca_file=str(certificate[0])) as api:
        assert (await api.get("/echo"))["method"] == "GET"


async def test_https_ca_file_relative_to_manifest(tls_server, certificate):
    api = make(tls_server.url, ca_file=certificate[0].name)
    api.bind_manifest(ManifestOrigin(certificate[0].parent / "api.yaml", 1, "", ""))
    async with api:
        assert (await api.get("/echo"))["method"] == "GET"


async def test_https_untrusted_certificate_is_refused_without_retry(tls_server, state):
    api = make(tls_server.url, retries=3)
    with pytest.raises(XResourceConnectionError, match="ca_file"):
        await api.connect()
    assert api.request_stats["requests"] == 1


async def test_https_without_verification(tls_server, caplog):
    async with make(tls_server.url, verify_ssl=False) as api:
        assert (await api.get("/echo"))["method"] == "GET"
    assert "verification is turned off" in caplog.text


async def test_missing_ca_file(tls_server, tmp_path: Path):
    api = make(tls_server.url, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(XResourceConnectionError, match="ca_file"):
        await api.connect()
