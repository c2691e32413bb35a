"""Spans from the real PostgreSQL, MariaDB, SecantusDB (MongoDB) and an aiohttp server, in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.backends.db_contract import unique
from tests.support import http_servers as hs
from tests.support.mongo_server import SecantusServer, secantus
from tests.support.services import require_service
from xresource import Registry, telemetry
from xresource.backends.databases.mongodb import MongoResource
from xresource.backends.databases.mysql import MySQLResource
from xresource.backends.databases.postgresql import PostgresResource
from xresource.backends.network.rest_api import RestApiResource
from xresource.errors import XResourceRequestError, XResourceSyntaxError

__all__ = ["secantus"]  # the fixture, imported for this module

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = f"pw-{uuid.uuid4().hex}"  # trust auth on the test server accepts any password


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def everything_recorded(spans: Sequence[ReadableSpan]) -> str:
    """Every attribute, status and event text of the spans, to look for secrets in."""
    parts: list[str] = []
    for span in spans:
        parts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        parts.append(span.status.description or "")
        for event in span.events:
            parts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    return "\n".join(parts)


async def insert_then_fail(db: Any, table: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(f"INSERT INTO {table} VALUES (3, 'c')")
        _ = 1 / 0


@pytest.fixture
def pg_password(monkeypatch: pytest.MonkeyPatch) -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    monkeypatch.setenv("XR_TEL_PG_PW", SECRET)
    return "${env:XR_TEL_PG_PW}"


# ---- off means untouched ------------------------------------------------------------------------


def test_off_the_classes_hold_their_own_functions(provider: TracerProvider) -> None:
    originals = {name: PostgresResource.__dict__[name] for name in ("fetch", "fetchval", "transaction")}
    send = RestApiResource.__dict__["_send"]
    telemetry.instrument(provider)
    try:
        assert telemetry.is_instrumented()
        assert all(PostgresResource.__dict__[name] is not f for name, f in originals.items())
        assert RestApiResource.__dict__["_send"] is not send
    finally:
        telemetry.uninstrument()
    assert not telemetry.is_instrumented()
    assert {name: PostgresResource.__dict__[name] for name in originals} == originals
    assert RestApiResource.__dict__["_send"] is send


# ---- PostgreSQL ------------------------------------------------------------------------------------


async def test_postgresql_queries_and_transactions(
    exporter: InMemorySpanExporter, provider: TracerProvider, pg_password: str, tmp_path: Path
) -> None:
    (tmp_path / "orders.yaml").write_text(
        f"name: orders_db\ntype: postgresql\nconnection_string: {PG_URL}\npassword: '{pg_password}'\n"
    )
    table = unique("tel")
    app = provider.get_tracer("app")
    async with Registry(tmp_path) as registry:
        db = registry.get("orders_db")
        assert exporter.get_finished_spans() == ()  # connecting and health checks make no spans
        with app.start_as_current_span("handle request"):
            await db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
            await db.execute(f"INSERT INTO {table} VALUES ($1, $2)", 1, "card 4111-1111")
            assert await db.fetchval(f"SELECT '{SECRET}' FROM {table}") == SECRET
            async with db.transaction(isolation="serializable") as conn:
                await conn.execute(f"INSERT INTO {table} VALUES (2, 'b')")
            with pytest.raises(XResourceSyntaxError):
                await db.fetch(f'SELECT * FROM "{SECRET}"')  # the server quotes the secret back
            with pytest.raises(ZeroDivisionError):
                await insert_then_fail(db, table)
            await db.execute(f"DROP TABLE {table}")
        assert await db.validate_connection()
        status = registry.status()["orders_db"]
    spans = exporter.get_finished_spans()
    root = named(spans, "handle request")
    ours = [s for s in spans if s is not root]
    assert [s.name for s in ours] == [
        "execute orders_db", "execute orders_db", "fetchval orders_db", "transaction orders_db",
        "fetch orders_db", "transaction orders_db", "execute orders_db",
    ]  # fmt: skip
    for span in ours:
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert span.kind is SpanKind.CLIENT
        attributes = span.attributes or {}
        assert attributes["xresource.resource.name"] == "orders_db"
        assert attributes["xresource.resource.type"] == "postgresql"
        assert attributes["xresource.resource.manifest_hash"] == status.manifest_hash
        assert attributes["db.system.name"] == "postgresql"
        assert attributes["db.namespace"] == "test"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == 5432

    insert = ours[1].attributes or {}
    assert insert["db.query.text"] == f"INSERT INTO {table} VALUES ($1, $2)"  # the values are not recorded
    assert insert["xresource.operation"] == "execute"
    assert "***" in str((ours[2].attributes or {})["db.query.text"])  # the resolved password, scrubbed

    committed, failed_query, rolled_back = ours[3], ours[4], ours[5]
    assert committed.status.status_code is StatusCode.UNSET
    assert (committed.attributes or {})["xresource.transaction.isolation"] == "serializable"
    assert (committed.attributes or {})["xresource.transaction.outcome"] == "commit"
    assert failed_query.status.status_code is StatusCode.ERROR
    assert (failed_query.attributes or {})["error.type"] == "XResourceSyntaxError"
    assert "does not exist" in (failed_query.status.description or "")
    assert (rolled_back.attributes or {})["xresource.transaction.outcome"] == "rollback"
    assert (rolled_back.attributes or {})["error.type"] == "ZeroDivisionError"
    assert rolled_back.status.description is None  # the application's message is not ours to copy

    recorded = everything_recorded(spans)
    assert SECRET not in recorded
    assert "4111" not in recorded  # a parameter value


async def test_statements_can_be_left_out(provider: TracerProvider, pg_password: str) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.instrument(provider, statements=False)
    try:
        async with PostgresResource(name="quiet_db", connection_string=PG_URL) as db:
            await db.fetchval("SELECT 1")
    finally:
        telemetry.uninstrument()
    (span,) = [s for s in memory.get_finished_spans() if s.name == "fetchval quiet_db"]
    assert "db.query.text" not in (span.attributes or {})


async def test_health_checks_make_no_spans(exporter: InMemorySpanExporter) -> None:
    require_service("MariaDB", "127.0.0.1", 3306)
    async with MySQLResource(name="my_db", connection_string="mysql://root@127.0.0.1:3306/test") as db:
        assert await db.validate_connection()  # runs fetchval("SELECT 1") inside
        assert exporter.get_finished_spans() == ()
        async with db.transaction(readonly=True) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert await db.fetchval("SELECT %s", 2) == 2
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["transaction my_db", "fetchval my_db"]
    transaction, query = exporter.get_finished_spans()
    assert (transaction.attributes or {})["xresource.transaction.readonly"] is True
    assert (query.attributes or {})["db.system.name"] == "mysql"
    assert (query.attributes or {})["db.query.text"] == "SELECT %s"


# ---- MongoDB -----------------------------------------------------------------------------------------


@pytest.fixture
async def mongo(secantus: SecantusServer, exporter: InMemorySpanExporter) -> AsyncIterator[MongoResource]:
    res = MongoResource(name="docs_db", connection_string=secantus.url(f"tel_{uuid.uuid4().hex[:8]}"))
    async with res:  # connected after instrument(): the client has the command listener
        assert exporter.get_finished_spans() == ()
        yield res


async def test_mongodb_commands_and_transactions(
    mongo: MongoResource, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    items = mongo.get_collection("people")
    with provider.get_tracer("app").start_as_current_span("job"):
        await items.insert_one({"_id": 1, "ssn": "078-05-1120"})
        assert await items.find_one({"ssn": "078-05-1120"}) is not None
        async with mongo.transaction() as session:
            await items.insert_one({"_id": 2}, session=session)
        assert await mongo.validate_connection()
    spans = exporter.get_finished_spans()
    job = named(spans, "job")
    insert = [s for s in spans if s.name == "insert docs_db"]
    find = named(spans, "find docs_db")
    transaction = named(spans, "transaction docs_db")
    assert len(insert) == 2
    assert find.parent is not None
    assert find.parent.span_id == job.context.span_id
    attributes = find.attributes or {}
    assert attributes["db.operation.name"] == "find"
    assert attributes["db.collection.name"] == "people"
    assert attributes["db.system.name"] == "mongodb"
    assert attributes["xresource.resource.name"] == "docs_db"
    in_transaction = [s for s in insert if s.parent and s.parent.span_id == transaction.context.span_id]
    assert len(in_transaction) == 1
    assert not [s for s in spans if s.name.startswith(("ping", "hello"))]
    assert "078-05-1120" not in everything_recorded(spans)  # command documents are data


# ---- REST --------------------------------------------------------------------------------------------


async def test_rest_requests_carry_the_trace_context(
    exporter: InMemorySpanExporter, provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XR_TEL_API_KEY", hs.API_KEY)
    app, state = hs.rest_app()
    server = await hs.start_app(app)
    try:
        api = RestApiResource(
            name="billing_api",
            endpoint=server.url,
            auth_params={"api_key": "${env:XR_TEL_API_KEY}", "api_key_query": "key"},
            retries=0,
        )
        async with api:
            assert exporter.get_finished_spans() == ()  # the health request at connect: none
            with provider.get_tracer("app").start_as_current_span("checkout"):
                assert (await api.get("secure/query"))["ok"] is True
                with pytest.raises(XResourceRequestError):
                    await api.post("status/500", json={"card": "4111"})
    finally:
        await server.stop()
    spans = exporter.get_finished_spans()
    checkout = named(spans, "checkout")
    get, post = named(spans, "GET billing_api"), named(spans, "POST billing_api")
    for span in (get, post):
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == checkout.context.span_id
    assert (get.attributes or {})["http.response.status_code"] == 200
    assert (get.attributes or {})["server.address"] == "127.0.0.1"
    assert (post.attributes or {})["http.response.status_code"] == 500
    assert (post.attributes or {})["error.type"] == "500"
    assert post.status.status_code is StatusCode.ERROR
    # What the server received: W3C traceparent naming each request's own span.
    for span, path in ((get, "/secure/query"), (post, "/status/500")):
        (received,) = state.seen(path)
        version, trace_id, parent_id, flags = received.headers["traceparent"].split("-")
        assert version == "00"
        assert int(flags, 16) & 1  # sampled
        assert int(trace_id, 16) == span.context.trace_id == checkout.context.trace_id
        assert int(parent_id, 16) == span.context.span_id
    recorded = everything_recorded(spans)
    assert hs.API_KEY not in recorded
    assert "key=" not in recorded  # no URL with its query is recorded
    assert "4111" not in recorded


async def test_instrument_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from xresource.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(MissingDependencyError, match=r"xresource\[otel\]"):
        telemetry.instrument()
    assert not telemetry.is_instrumented()
