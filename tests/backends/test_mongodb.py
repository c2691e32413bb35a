"""``mongodb`` against SecantusDB servers started by the tests (MongoDB wire protocol)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient, MongoClient

from tests.backends.db_contract import SLACK, DatabaseContract, Make, poll, run_with_sampling, unique
from tests.support.mongo_server import SecantusServer, private_secantus, secantus, secantus_binary
from xresource.backends.databases.mongodb import MongoResource
from xresource.errors import XResourceConnectionError, XResourceError, XResourcePoolExhaustedError
from xresource.resource import State

__all__ = ["private_secantus", "secantus"]  # fixtures, imported for this module


@pytest.fixture
async def make(secantus: SecantusServer) -> AsyncIterator[Make]:
    """Resources on the shared server, each test in a database of its own."""
    made: list[MongoResource] = []
    database = unique("db")

    def build(**overrides: Any) -> MongoResource:
        fields = {
            "name": "mongo_test",
            "connection_string": secantus.url(database),
            "min_pool_size": 1,
            "max_pool_size": 5,
            "connect_timeout": 5,
            **overrides,
        }
        res = MongoResource.model_validate(fields)
        made.append(res)
        return res

    yield build
    for res in made:
        await res.disconnect()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[tuple[SecantusServer, str, str]]:
    """A SecantusDB that requires SCRAM authentication: ``(server, user, password)``.

    Users are provisioned on an open server, which then restarts with ``--auth``
    on the same storage (the SecantusDB way).
    """
    if secantus_binary() is None:
        pytest.skip("secantusd-py is not installed")
    storage = tempfile.mkdtemp(prefix="xr-secantus-")
    server = SecantusServer(storage=storage)
    user, password = "app", "mg" + uuid.uuid4().hex
    try:
        server.start()
        with MongoClient(server.url("admin"), serverSelectionTimeoutMS=10_000) as client:
            client.admin.command("createUser", user, pwd=password, roles=["root"])
        server.stop()
        server.auth = True
        server.start()
        yield server, user, password
    finally:
        server.kill()  # throwaway storage: no need for the slow clean shutdown
        shutil.rmtree(storage, ignore_errors=True)


class TestMongoContract(DatabaseContract):
    resource_class = MongoResource
    base_fields = {"name": "events", "connection_string": "mongodb://app@db.internal:27017/events"}
    disconnect_waits_for_leases = False  # PyMongo's close() does not wait for sessions

    @pytest.fixture
    def secret_case(
        self, make: Make, auth_server: tuple[SecantusServer, str, str], monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Any, str]:
        server, user, password = auth_server
        monkeypatch.setenv("XR_TEST_MONGO_PW", password)
        url = f"mongodb://{user}:${{env:XR_TEST_MONGO_PW}}@127.0.0.1:{server.port}/?authSource=admin"
        return make(name="mongo_secret", connection_string=url, database=unique("db")), password

    @pytest.fixture
    def wrong_password(
        self, make: Make, auth_server: tuple[SecantusServer, str, str], monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Any, str]:
        server, user, _ = auth_server
        secret = "wrong" + uuid.uuid4().hex
        monkeypatch.setenv("XR_TEST_MONGO_WRONG", secret)
        res = make(
            name="mongo_wrong",
            connection_string=f"mongodb://{user}@127.0.0.1:{server.port}/admin",
            password="${env:XR_TEST_MONGO_WRONG}",
        )
        return res, secret

    def url_for(self, host: str, port: int) -> str:
        return f"mongodb://{host}:{port}/test"

    def missing_database(self, make: Make) -> None:
        return None  # MongoDB creates a database on first write

    async def ping(self, res: MongoResource) -> object:
        return await res.get_collection("ping").find_one({})

    async def make_table(self, res: MongoResource, name: str) -> None:
        await res.db.create_collection(name)

    async def drop_table(self, res: MongoResource, name: str) -> None:
        await res.db.drop_collection(name)

    async def provoke_error(self, res: MongoResource, text: str) -> None:
        async with res.translate_errors("find_one"):  # "unknown top level operator: $x<text>"
            await res.get_collection("c").find_one({f"$x{text}": 1})


async def test_round_trip_through_collections_and_the_database(make: Make) -> None:
    async with make() as res:
        assert isinstance(res, MongoResource)
        people = res.get_collection("people")
        assert res.get_collection("people") is people  # handles are cached
        await people.insert_many([{"_id": 1, "name": "ada"}, {"_id": 2, "name": "bob"}])
        assert await people.find_one({"_id": 2}) == {"_id": 2, "name": "bob"}
        await res.db["people"].update_one({"_id": 1}, {"$set": {"name": "Ada"}})
        assert [d["name"] async for d in people.find({}, sort=[("_id", 1)])] == ["Ada", "bob"]
        assert (await res.db.command("ping"))["ok"] == 1.0
        await res.db.create_collection("places")
        collections = await res.get_collections()
        assert sorted(collections) == ["people", "places"]
        assert await collections["people"].count_documents({}) == 2
        assert list(await res.get_collections("people", "later")) == ["people", "later"]
        assert await res.list_collections_or_tables() == ["people", "places"]
        assert await res.client.address == ("127.0.0.1", res.get_metadata()["port"])


async def test_acquire_yields_a_session(make: Make) -> None:
    async with make() as res:
        assert isinstance(res, MongoResource)
        items = res.get_collection("items")
        async with res.acquire(timeout=5) as session:
            await items.insert_one({"_id": 1}, session=session)
            assert await items.find_one({"_id": 1}, session=session) == {"_id": 1}
            assert not session.has_ended
        assert session.has_ended


async def test_operations_that_wait_too_long_for_a_connection_are_pool_exhaustion(make: Make) -> None:
    async with make(min_pool_size=0, max_pool_size=1, acquire_timeout=0.001) as res:
        assert isinstance(res, MongoResource)
        items = res.get_collection("items")
        await items.insert_one({"_id": 1})

        async def find() -> object:
            async with res.translate_errors("find_one"):
                return await items.find_one({"_id": 1})

        outcomes = await asyncio.gather(*(find() for _ in range(200)), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert errors, "200 finds on one connection with a 1 ms wait limit must run out of connections"
        assert all(isinstance(e, XResourcePoolExhaustedError) for e in errors), errors[:3]
        assert "pool size 1" in str(errors[0])
        assert res.target() in str(errors[0])
        assert outcomes.count({"_id": 1}) == len(outcomes) - len(errors)


async def test_500_concurrent_finds_never_use_more_than_max_pool_size(
    make: Make, secantus: SecantusServer
) -> None:
    name = unique("mongo_conc").replace("_", "-")
    res = make(name=name, min_pool_size=0, max_pool_size=5)
    assert isinstance(res, MongoResource)
    await res.connect()
    items = res.get_collection("items")
    await items.insert_one({"_id": 1})
    observer: AsyncMongoClient[Any] = AsyncMongoClient(secantus.url(), appname="observer")
    try:
        client_side: list[dict[str, int]] = []

        async def sample() -> int:
            client_side.append(dict(res.get_pool_stats()))
            ops = (await observer.admin.command({"currentOp": 1, "$all": True}))["inprog"]
            # The resource's pooled connections; PyMongo's server monitors
            # (driver "PyMongo|c", not "...|async") are not part of the pool.
            return sum(
                1
                for op in ops
                if op.get("clientMetadata", {}).get("application", {}).get("name") == f"xresource:{name}"
                and op["clientMetadata"].get("driver", {}).get("name", "").endswith("async")
            )

        jobs = [items.find_one({"_id": 1}) for _ in range(500)]
        results, samples = await run_with_sampling(jobs, sample, every=0.02)
        assert results == [{"_id": 1}] * 500
        assert samples
        assert max(samples) <= 5
        assert max(samples) >= 2  # the load really ran in parallel
        assert max(s["in_use"] for s in client_side) <= 5
        assert max(s["size"] for s in client_side) <= 5
        assert max(s["waiters"] for s in client_side) > 0  # and queued for the pool
    finally:
        await observer.close()
        await res.disconnect()


async def test_recovers_by_itself_after_the_server_is_killed(private_secantus: SecantusServer) -> None:
    res = MongoResource(
        name="mongo_fault", connection_string=private_secantus.url("app"), connect_timeout=1.0
    )
    async with res:
        items = res.get_collection("items")
        await items.insert_one({"_id": 1})
        private_secantus.kill()
        try:
            start = time.monotonic()
            assert not await res.validate_connection()
            assert time.monotonic() - start < 1.0 + SLACK
            assert res.last_error
            assert f"127.0.0.1:{private_secantus.port}" in res.last_error
            with pytest.raises(XResourceConnectionError):
                async with res.translate_errors("find_one"):
                    await items.find_one({"_id": 1})
            assert res.state is State.READY
        finally:
            private_secantus.start()  # same port; in-memory storage starts empty
        await poll(res.validate_connection, timeout=15)
        await items.insert_one({"_id": 2})
        assert await items.find_one({"_id": 2}) == {"_id": 2}


# ---- manifests ----------------------------------------------------------------------------


def test_motor_era_names_are_accepted() -> None:
    res = MongoResource.model_validate(
        {
            "name": "m",
            "connection_string": "mongodb://db:27017/app",
            "maxPoolSize": 7,
            "minPoolSize": 2,
            "maxIdleTimeMS": 60_000,
            "connectTimeoutMS": 2500,
            "waitQueueTimeoutMS": 1500,
            "tlsCAFile": "/etc/ssl/ca.pem",
        }
    )
    assert (res.max_pool_size, res.min_pool_size, res.max_idle_time_ms) == (7, 2, 60_000)
    assert (res.connect_timeout, res.acquire_timeout) == (2.5, 1.5)
    assert res.ca_file == "/etc/ssl/ca.pem"
    assert res.get_metadata()["tls"] is True  # a CA file means TLS
    properties = MongoResource.model_json_schema()["properties"]
    assert properties["maxPoolSize"]["deprecated"] is True
    assert properties["maxPoolSize"]["type"] == "integer"
    assert properties["connectTimeoutMS"]["type"] == "number"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"maxPoolSize": 5, "max_pool_size": 6}, "same setting"),
        ({"connection_string": "mongodb://db/app?maxPoolSize=5"}, "maxPoolSize"),
        ({"connection_string": "mongodb://db/app?tls=true"}, "tls"),
        ({"options": {"maxPoolSize": 5}}, "maxpoolsize"),
        ({"connection_string": "mongodb://db:27017"}, "no database"),
        ({"ca_file": "/ca.pem", "tls": False}, "tls is false"),
        ({"maxPoolSize": "many"}, "max_pool_size"),
        ({"password": "${env:PW}"}, "names no user"),
    ],
)
def test_bad_mongo_settings(fields: dict[str, Any], expected: str) -> None:
    base = {"name": "m", "connection_string": "mongodb://db:27017/app"}
    with pytest.raises(ValidationError, match=expected):
        MongoResource.model_validate({**base, **fields})


def test_database_field_wins_over_the_url_path() -> None:
    res = MongoResource(name="m", connection_string="mongodb://db:27017/fromurl", database="fromfield")
    assert res.get_metadata()["database"] == "fromfield"
    srv = MongoResource(name="m", connection_string="mongodb+srv://cluster.example.net/app")
    assert srv.target() == "cluster.example.net"  # SRV records name the hosts and ports
    assert srv.get_metadata()["port"] is None


async def test_operations_before_connect_say_not_connected() -> None:
    res = MongoResource(name="m", connection_string="mongodb://127.0.0.1:1/app")
    with pytest.raises(XResourceError, match="not connected"):
        _ = res.db
    with pytest.raises(XResourceError, match="not connected"):
        res.get_collection("x")
    with pytest.raises(XResourceError, match="not connected"):
        await res.list_collections_or_tables()


async def test_mongo_only_state_lives_in_its_own_runtime(make: Make) -> None:
    from xresource.backends.databases._base import PoolRuntime
    from xresource.backends.databases.mongodb import MongoRuntime

    assert not {"db", "collections", "leases", "lease_waiting"} & set(PoolRuntime.__slots__)
    res = make()
    async with res:
        assert isinstance(res._rt, MongoRuntime)
        assert res.get_collection("things") is res.get_collection("things")  # cached per runtime
    with pytest.raises(XResourceError, match="not connected"):
        res.get_collection("things")
