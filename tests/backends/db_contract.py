"""The contract every database backend passes, written once.

A backend's test module subclasses :class:`DatabaseContract` and supplies the
fixtures and hooks listed on the class; pytest then runs every test below
against that backend's real server. Backend-specific behaviour (query shapes,
server-side connection counting, fault injection) stays in the backend's own
module.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from tests.support.services import free_port
from tests.support.waiting import SLACK, eventually, stays
from xresource.backends.databases._base import DatabaseResource, PoolRuntime
from xresource.errors import (
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceError,
    XResourceIntegrityError,
    XResourcePoolExhaustedError,
    XResourceQueryError,
    XResourceStateError,
    XResourceSyntaxError,
    XResourceTimeoutError,
)
from xresource.resource import State

Make = Callable[..., DatabaseResource]


def unique(prefix: str = "xr") -> str:
    """A table/collection name no concurrent test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def run_with_sampling(
    jobs: list[Awaitable[Any]], sample: Callable[[], Awaitable[int] | int], every: float = 0.01
) -> tuple[list[Any], list[int]]:
    """Run ``jobs`` concurrently while sampling ``sample()``; returns results and samples."""
    samples: list[int] = []
    done = asyncio.Event()

    async def sampler() -> None:
        while not done.is_set():
            value = sample()
            samples.append(value if isinstance(value, int) else await value)
            await asyncio.sleep(every)

    task = asyncio.create_task(sampler())
    try:
        results = await asyncio.gather(*jobs)
    finally:
        done.set()
        await task
    return results, samples


def scan(texts: list[str], secret: str) -> None:
    leaked = [text for text in texts if secret in text]
    assert not leaked, f"the secret leaked into: {leaked[0][:300]!r}"


class DatabaseContract:
    """Tests shared by the database backends.

    A subclass provides:

    - fixture ``make``: ``make(**overrides)`` builds an unconnected resource for
      the working server;
    - fixture ``secret_case``: ``(resource, secret)``, a resource that connects
      with the resolved secret ``secret`` as its password;
    - fixture ``wrong_password``: ``(resource, secret)``, a resource whose
      password the server rejects;
    - ``resource_class`` and ``base_fields`` (fields of a valid manifest), and
      ``disconnect_waits_for_leases`` when the driver closes without waiting;
    - ``url_for(host, port)``: a connection string for another address;
    - ``missing_database(make)``: a resource naming a database that does not
      exist, or ``None`` where that is not an error (MongoDB);
    - ``ping(res)``, ``make_table(res, name)``, ``drop_table(res, name)``;
    - ``provoke_error(res, text)``: an operation that fails with a server
      error quoting ``text``;
    - ``bad_syntax(res)``: a query the server cannot parse;
    - ``insert_twice(res, table)``: write the same unique key twice into the
      (empty) table ``make_table`` made, the second write violating uniqueness;
    - ``slow_query(res, seconds)``: an operation taking that long, or ``None``.
    """

    resource_class: ClassVar[type[DatabaseResource]]
    base_fields: ClassVar[dict[str, Any]]
    disconnect_waits_for_leases: ClassVar[bool] = True

    def url_for(self, host: str, port: int) -> str:
        raise NotImplementedError

    def missing_database(self, make: Make) -> DatabaseResource | None:
        raise NotImplementedError

    async def ping(self, res: Any) -> object:
        raise NotImplementedError

    async def make_table(self, res: Any, name: str) -> None:
        raise NotImplementedError

    async def drop_table(self, res: Any, name: str) -> None:
        raise NotImplementedError

    async def provoke_error(self, res: Any, text: str) -> None:
        raise NotImplementedError

    async def bad_syntax(self, res: Any) -> None:
        raise NotImplementedError

    async def insert_twice(self, res: Any, table: str) -> None:
        raise NotImplementedError

    def slow_query(self, res: Any, seconds: float) -> Awaitable[object] | None:
        return None

    @pytest.fixture
    def silent_port(self) -> Iterator[int]:
        """A loopback port whose listener completes the TCP handshake and never says a word."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            yield int(sock.getsockname()[1])

    # ---- lifecycle ------------------------------------------------------------------------

    async def test_connect_validate_disconnect_twice(self, make: Make) -> None:
        res = make()
        assert res.state is State.NEW
        assert not await res.validate_connection()
        with pytest.raises(XResourceStateError):
            await self.ping(res)
        await res.connect()
        assert res.state is State.READY
        assert await res.validate_connection()
        await self.ping(res)
        await res.connect()  # connecting a connected resource changes nothing
        assert await res.validate_connection()
        await res.disconnect()
        await res.disconnect()
        assert res.state is State.CLOSED
        assert not await res.validate_connection()
        with pytest.raises(XResourceStateError, match="not connected"):
            await self.ping(res)
        with pytest.raises(XResourceStateError):
            async with res.acquire():
                pass
        assert res.get_pool_stats()["size"] == 0
        async with res:  # a closed resource can connect again
            await self.ping(res)
        assert res.state is State.CLOSED

    async def test_runtime_lives_in_the_slot_only_while_connected(self, make: Make) -> None:
        res = make()
        assert res._rt is None
        private_before = dict(res.__pydantic_private__ or {})
        async with res:
            rt = res._rt
            assert isinstance(rt, PoolRuntime)
            assert not hasattr(rt, "__dict__")  # slotted: cheap reads on the query path
            assert rt.pool is not None
            # Driver state lives in the runtime, never in the model's private attributes.
            for name, value in (res.__pydantic_private__ or {}).items():
                assert type(value).__module__.split(".")[0] in ("builtins", "xresource", "asyncio"), name
            assert copy.copy(res)._rt is None  # a copy is unconnected
            await self.ping(res)
        assert res._rt is None
        assert set(res.__pydantic_private__ or {}) == set(private_before)

    # ---- errors -----------------------------------------------------------------------------

    async def test_bad_requests_are_query_errors_not_connection_errors(self, make: Make) -> None:
        """Retrying a connection error may help; retrying these will not, so they are not one."""
        async with make() as res:
            with pytest.raises(XResourceSyntaxError) as syntax:
                await self.bad_syntax(res)
            name = unique()
            await self.make_table(res, name)
            try:
                with pytest.raises(XResourceIntegrityError) as integrity:
                    await self.insert_twice(res, name)
            finally:
                await self.drop_table(res, name)
            for info in (syntax, integrity):
                assert isinstance(info.value, XResourceQueryError)
                assert not isinstance(info.value, XResourceConnectionError)
                assert info.value.code is not None  # the server's own code, to program against
                assert info.value.__cause__ is not None  # the driver's exception, chained
                assert res.name in str(info.value)
            await self.ping(res)  # the pool is fine afterwards

    async def test_list_collections_or_tables(self, make: Make) -> None:
        name = unique()
        async with make() as res:
            await self.make_table(res, name)
            try:
                names = await res.list_collections_or_tables()
                assert name in names
                assert names == sorted(names)
            finally:
                await self.drop_table(res, name)
            assert name not in await res.list_collections_or_tables()

    async def test_metadata_names_the_target_and_pool(self, make: Make) -> None:
        async with make(min_pool_size=1, max_pool_size=3) as res:
            meta = res.get_metadata()
            for key in ("host", "port", "database", "user", "pool", "target"):
                assert key in meta, key
            assert meta["target"] == f"{meta['host']}:{meta['port']}"
            assert meta["pool"]["max"] == 3
            assert "password" not in json.dumps(meta, default=str).lower()
            json.dumps(meta, default=str)  # serialisable for /resources

    # ---- pool -----------------------------------------------------------------------------

    async def test_pool_stats_follow_acquire(self, make: Make) -> None:
        async with make(min_pool_size=1, max_pool_size=3) as res:
            stats = res.get_pool_stats()
            assert set(stats) == {"size", "in_use", "idle", "waiters", "max"}
            assert stats["max"] == 3
            assert 0 <= stats["size"] <= 3
            assert stats["in_use"] + stats["idle"] == stats["size"]
            async with res.acquire(timeout=5) as conn:
                assert conn is not None
            assert res.get_pool_stats()["waiters"] == 0

    async def test_pool_exhausted_names_resource_address_and_size(self, make: Make) -> None:
        async with make(min_pool_size=0, max_pool_size=1) as res:
            async with res.acquire():
                # A second caller waits, and counts as a waiter while it does.
                waiter = asyncio.create_task(self._acquire_once(res, timeout=10))
                await eventually(lambda: res.get_pool_stats()["waiters"] >= 1)
                start = time.monotonic()
                with pytest.raises(XResourcePoolExhaustedError) as info:
                    async with res.acquire(timeout=0.3):
                        pass
                elapsed = time.monotonic() - start
                assert 0.25 <= elapsed < 0.3 + SLACK
                message = str(info.value)
                assert res.name in message
                assert res.target() in message
                assert "pool size 1" in message
                assert isinstance(info.value, XResourceTimeoutError)  # and so a TimeoutError
                assert isinstance(info.value, TimeoutError)
            await asyncio.wait_for(waiter, 5)  # the waiter got the freed connection
            async with res.acquire(timeout=5):
                pass
            assert res.get_pool_stats()["waiters"] == 0

    @staticmethod
    async def _acquire_once(res: DatabaseResource, timeout: float) -> None:
        async with res.acquire(timeout=timeout):
            pass

    # ---- unreachable and refusing servers -------------------------------------------------

    async def test_closed_port_fails_within_connect_timeout(self, make: Make) -> None:
        port = free_port()
        res = make(connection_string=self.url_for("127.0.0.1", port), connect_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(XResourceConnectionError) as info:
            await res.connect()
        assert time.monotonic() - start < 1.0 + SLACK
        assert type(info.value) is XResourceConnectionError  # refused: not auth, not a timeout
        assert f"127.0.0.1:{port}" in str(info.value)
        assert res.name in str(info.value)
        assert info.value.__cause__ is not None
        assert res.state is State.FAILED
        assert res.last_error
        assert f"127.0.0.1:{port}" in res.last_error
        assert not await res.validate_connection()

    async def test_silent_server_times_out_within_connect_timeout(self, make: Make, silent_port: int) -> None:
        res = make(connection_string=self.url_for("127.0.0.1", silent_port), connect_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(XResourceTimeoutError) as info:
            await res.connect()
        elapsed = time.monotonic() - start
        assert 0.8 <= elapsed < 1.0 + SLACK
        assert f"127.0.0.1:{silent_port}" in str(info.value)
        assert res.name in str(info.value)
        assert res.state is State.FAILED

    async def test_wrong_password_is_an_authentication_error(
        self, wrong_password: tuple[DatabaseResource, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        res, secret = wrong_password
        with pytest.raises(XResourceAuthenticationError) as info:
            await res.connect()
        message = str(info.value)
        assert res.name in message
        assert res.target() in message
        assert info.value.__cause__ is not None
        assert res.state is State.FAILED
        scan(
            [message, repr(info.value), repr(res), str(res.last_error), json.dumps(res.get_metadata())]
            + [record.getMessage() for record in caplog.records],
            secret,
        )

    async def test_missing_database_says_so(self, make: Make) -> None:
        res = self.missing_database(make)
        if res is None:
            pytest.skip("this backend creates databases on first use")
        with pytest.raises(XResourceConnectionError) as info:
            await res.connect()
        assert type(info.value) is XResourceConnectionError
        message = str(info.value)
        database = res.get_metadata()["database"]
        assert database in message
        assert "does not exist" in message or "Unknown database" in message
        assert res.target() in message

    # ---- secrets --------------------------------------------------------------------------

    async def test_secrets_never_shown(
        self, secret_case: tuple[DatabaseResource, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        res, secret = secret_case
        outputs = [repr(res), str(res), res.model_dump_json()]
        async with res:
            await self.ping(res)
            meta = res.get_metadata()
            outputs += [repr(res), str(meta), json.dumps(meta, default=str), str(res.get_pool_stats())]
            # Every log line so far, the drivers' included: connecting and logging in.
            outputs += [record.getMessage() for record in caplog.records]
            caplog.clear()
            # A server error that quotes the secret (a hostile or careless query) is scrubbed.
            # (A driver's debug log of that query is the query's own text, so from here on
            # only our own log lines are scanned.)
            with pytest.raises(XResourceError) as info:
                await self.provoke_error(res, secret)
            assert "***" in str(info.value)
            outputs += [str(info.value), repr(info.value)]
        outputs += [repr(res), res.model_dump_json()]
        outputs += [r.getMessage() for r in caplog.records if r.name.startswith("xresource")]
        scan(outputs, secret)

    # ---- closing --------------------------------------------------------------------------

    async def test_disconnect_lets_inflight_work_finish(self, make: Make) -> None:
        res = make()
        await res.connect()
        slow = self.slow_query(res, 0.6)
        if slow is None:
            await res.disconnect()
            pytest.skip("no slow server-side operation to hold a connection with")
        task = asyncio.ensure_future(slow)
        await eventually(lambda: res.get_pool_stats()["in_use"] >= 1)
        start = time.monotonic()
        await res.disconnect()
        assert time.monotonic() - start >= 0.3  # it waited for the query
        await asyncio.wait_for(task, 1)  # which finished normally, not cut off
        assert res.state is State.CLOSED

    async def test_disconnect_waits_for_an_acquired_connection(self, make: Make) -> None:
        res = make(close_timeout=5)
        await res.connect()
        async with res.acquire() as conn:
            assert conn is not None
            closing = asyncio.create_task(res.disconnect())
            if self.disconnect_waits_for_leases:
                await stays(lambda: not closing.done(), duration=0.2, what="disconnect waits for the lease")
            else:
                await eventually(closing.done, what="disconnect does not wait for the lease")
            released = time.monotonic()
        # Giving the connection back to a pool that is closing works, and the
        # close completes right away rather than at close_timeout.
        await asyncio.wait_for(closing, 5)
        assert time.monotonic() - released < 1.0 + SLACK
        assert res.state is State.CLOSED

    async def test_disconnect_is_bounded_by_close_timeout(self, make: Make) -> None:
        res = make(close_timeout=0.3)
        await res.connect()
        slow = self.slow_query(res, 3)
        if slow is None:
            await res.disconnect()
            pytest.skip("no slow server-side operation to hold a connection with")
        task = asyncio.ensure_future(slow)
        await eventually(lambda: res.get_pool_stats()["in_use"] >= 1)
        start = time.monotonic()
        await res.disconnect()
        assert time.monotonic() - start < 0.3 + SLACK
        with pytest.raises(XResourceError):
            await asyncio.wait_for(task, 5)  # its connection was closed under it
        assert res.state is State.CLOSED

    # ---- manifests ------------------------------------------------------------------------

    def test_valid_manifest_builds(self) -> None:
        res = self.resource_class.model_validate(self.base_fields)
        assert res.target()
        assert res.state is State.NEW

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({"min_pool_size": 5, "max_pool_size": 2}, "min_pool_size"),
            ({"max_pool_size": 0}, "max_pool_size"),
            ({"connect_timeout": 0}, "connect_timeout"),
            ({"pool_size": 3}, "pool_size"),  # a typo must not pass silently
            ({"password": "hunter2"}, "reference"),
            ({"options": {"password": "hunter2"}}, "reference"),
        ],
    )
    def test_bad_manifest_fields(self, change: dict[str, Any], expected: str) -> None:
        with pytest.raises(ValidationError, match=expected):
            self.resource_class.model_validate({**self.base_fields, **change})

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("{scheme}://app:hunter2@db:1234/app", "literal password"),
            ("{scheme}://app:pa$$word@db:1234/app", "literal password"),  # a '$' is no reference
            ("http://db:1234/app", "must start with"),
            ("{scheme}://app@db:port/app", "port"),
            ("{scheme}://app@db:99999/app", "port"),
        ],
    )
    def test_bad_connection_strings(self, url: str, expected: str) -> None:
        scheme = self.base_fields["connection_string"].partition("://")[0]
        fields = {**self.base_fields, "connection_string": url.format(scheme=scheme)}
        with pytest.raises(ValidationError, match=expected):
            self.resource_class.model_validate(fields)

    def test_password_in_url_and_field_is_ambiguous(self) -> None:
        scheme = self.base_fields["connection_string"].partition("://")[0]
        fields = {
            **self.base_fields,
            "connection_string": f"{scheme}://app:${{env:A}}@db:1234/app",
            "password": "${env:B}",
        }
        with pytest.raises(ValidationError, match="either"):
            self.resource_class.model_validate(fields)

    def test_file_reference_with_slashes_in_url(self) -> None:
        scheme = self.base_fields["connection_string"].partition("://")[0]
        fields = {
            **self.base_fields,
            "connection_string": f"{scheme}://app:${{file:/run/secrets/db/pw}}@db.internal:4321/app",
        }
        res = self.resource_class.model_validate(fields)
        assert res.target() == "db.internal:4321"
        meta = res.get_metadata()
        assert (meta["host"], meta["port"], meta["user"]) == ("db.internal", 4321, "app")
