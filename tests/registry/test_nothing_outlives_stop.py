"""Every resource type, through a real ``Registry`` on its real server: ``stop()`` leaves nothing.

For each of the 14 built-in types the test starts the type's server, counts the
process's asyncio tasks and open file descriptors, starts a registry with one
resource of that type, uses it (a query, a read, a request, a subscription
with a message received and an open ``messages()`` iterator), stops the
registry, and then waits for the counts to come back: no task and no descriptor
may be left. The stream contract has the harder variants for streams (a stop
during a reconnect, a silent host); this one covers every family the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.registry.support import fast_settings
from tests.support import http_servers as hs
from tests.support.brokers import HOST, RabbitVhost, kafka_broker, rabbitmq_vhost, task_census
from tests.support.mongo_server import SecantusServer, secantus
from tests.support.services import require_service
from tests.support.stream_feeds import SseFeedServer, WsFeedServer
from tests.support.waiting import eventually
from xresource.factory import ResourceFactory
from xresource.registry import Registry

__all__ = ["kafka_broker", "rabbitmq_vhost", "secantus"]  # session fixtures, imported for pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"

# Tasks of the test's own servers (aiohttp handlers wait for a client's next request, or end
# when the client's socket closes): not the resource's.
SERVER_SIDE = ("RequestHandler.", "WsFeedServer.", "SseFeedServer.", "BaseSite.", "Server.")


def client_tasks() -> Counter[str]:
    return Counter({name: n for name, n in task_census().items() if not name.startswith(SERVER_SIDE)})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def unique(prefix: str = "xr-teardown") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


Emit = Callable[[str, Any], Awaitable[Any]]


@dataclass
class Case:
    """One type's manifest fields and what the test does with the connected resource."""

    fields: dict[str, Any]
    use: Callable[[Any], Awaitable[None]] | None = None
    """An operation on the resource; ``None`` for a stream (see :func:`use_stream`)."""
    emit: Emit | None = None
    """How a message reaches a stream's subscriber: a feed server's, or the resource's own publish."""


# ---- how each family is used ----------------------------------------------------------------


async def read_file(resource: Any) -> None:
    assert await resource.read()


async def query_sql(resource: Any) -> None:
    assert await resource.fetchval("SELECT 1") == 1
    async with resource.acquire():
        pass


async def query_mongo(resource: Any) -> None:
    collection = resource.get_collection(unique("c").replace("-", "_"))
    await collection.insert_one({"n": 1})
    assert await collection.count_documents({}) == 1
    await collection.drop()


async def request_rest(resource: Any) -> None:
    assert await resource.get("echo/teardown")


# ---- cases: servers started inside the test, so the baseline counts them --------------------


@contextlib.asynccontextmanager
async def case_for(type_name: str, request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    if type_name in ("csv", "excel", "json", "yaml"):
        files = {
            "csv": "customers.csv",
            "excel": "orders.xlsx",
            "json": "products.json",
            "yaml": "regions.yaml",
        }
        fields: dict[str, Any] = {"file_path": str(EXAMPLES / files[type_name])}
        if type_name == "excel":
            fields["sheet"] = "orders"
        yield Case(fields, read_file)
    elif type_name == "postgresql":
        require_service("PostgreSQL", HOST, 5432)
        yield Case(
            {"connection_string": f"postgresql://postgres@{HOST}:5432/test", "max_pool_size": 2}, query_sql
        )
    elif type_name == "mysql":
        require_service("MariaDB", HOST, 3306)
        yield Case({"connection_string": f"mysql://root@{HOST}:3306/test", "max_pool_size": 2}, query_sql)
    elif type_name == "mongodb":
        mongo: SecantusServer = request.getfixturevalue("secantus")
        yield Case(
            {"connection_string": mongo.url(), "database": unique("db").replace("-", "_")}, query_mongo
        )
    elif type_name == "rest_api":
        app, _ = hs.rest_app()
        server = await hs.start_app(app)
        try:
            yield Case({"endpoint": server.url, "health_path": "/echo/health"}, request_rest)
        finally:
            await server.stop()
    elif type_name == "websocket":
        ws = await WsFeedServer().start()
        try:
            yield Case({"endpoint": ws.url}, emit=ws.emit)
        finally:
            await ws.stop()
    elif type_name == "sse":
        sse = await SseFeedServer().start()
        try:
            yield Case({"endpoint": sse.url}, emit=sse.emit)
        finally:
            await sse.stop()
    elif type_name == "redis_pubsub":
        require_service("Redis", HOST, 6379)
        yield Case({"connection_string": f"redis://{HOST}:6379/0"})
    elif type_name == "mqtt":
        require_service("Mosquitto", HOST, 1883)
        yield Case({"connection_string": f"mqtt://{HOST}:1883"})
    elif type_name == "rabbitmq":
        vhost: RabbitVhost = request.getfixturevalue("rabbitmq_vhost")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("XR_TEARDOWN_RABBIT_PW", vhost.password)
        url = vhost.url("${env:XR_TEARDOWN_RABBIT_PW}")
        yield Case({"connection_string": url, "exchange": unique("ex")})
    elif type_name == "kafka":
        broker: str = request.getfixturevalue("kafka_broker")
        fast = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100, "fetch_max_wait_ms": 100}
        yield Case({"bootstrap_servers": broker, "consumer_group": unique("g"), "consumer_config": fast})
    else:  # pragma: no cover - a new type must be added here
        raise AssertionError(f"no teardown case for {type_name!r}")


async def use_stream(resource: Any, emit: Emit | None) -> Any:
    """Subscribe, receive one message, and leave a ``messages()`` iterator open: returns it."""
    channel = unique("ch").replace("-", "_")
    got: list[Any] = []
    await resource.subscribe(channel, got.append)
    iterator = resource.messages()
    send = emit if emit is not None else resource.publish

    async def delivered() -> bool:
        if not got:
            await send(channel, {"n": 1})  # again until routed (some subscriptions take a moment)
        return bool(got)

    await eventually(delivered, timeout=60, interval=0.2, what=f"a message on {channel}")
    return iterator


async def drained(iterator: AsyncIterator[Any]) -> None:
    async for _ in iterator:
        pass


BUILT_IN = (
    "csv", "excel", "json", "yaml",
    "postgresql", "mysql", "mongodb",
    "rest_api",
    "websocket", "sse", "redis_pubsub", "mqtt", "rabbitmq", "kafka",
)  # fmt: skip


def test_every_built_in_type_is_covered() -> None:
    assert set(BUILT_IN) == set(ResourceFactory.known_types())


async def one_registry(folder: Path, type_name: str, case: Case) -> None:
    """Start a registry with one resource of ``type_name``, use the resource, stop the registry."""
    manifest = {"name": "subject", "type": type_name, **case.fields}
    (folder / "subject.yaml").write_text(yaml.safe_dump(manifest))
    registry = Registry(folder, settings=fast_settings(health_interval=0.05, connect_timeout=10))
    await registry.start()
    iterator = None
    try:
        resource = registry.get("subject")
        if case.use is None:
            iterator = await use_stream(resource, case.emit)
        else:
            await case.use(resource)
    finally:
        await registry.stop()
    if iterator is not None:  # it gives what it had buffered, then ends
        await asyncio.wait_for(drained(iterator), 5)


@pytest.mark.parametrize("type_name", BUILT_IN)
async def test_nothing_outlives_registry_stop(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "resources.d"
    folder.mkdir()
    async with case_for(type_name, request) as case:
        # A first registry loads the driver and what it keeps for the whole process (a
        # resolver, a thread pool); the counted one then shows what one registry leaves.
        await one_registry(folder, type_name, case)
        tasks_before, fds_before = client_tasks(), open_fds()
        await one_registry(folder, type_name, case)
        try:
            await eventually(lambda: not (client_tasks() - tasks_before), timeout=10)
        except AssertionError:
            raise AssertionError(f"tasks left after stop(): {client_tasks() - tasks_before}") from None
        await eventually(
            lambda: open_fds() <= fds_before, timeout=10, what=f"descriptors back to {fds_before}"
        )
