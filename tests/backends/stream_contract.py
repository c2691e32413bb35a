"""``StreamContract``: what every stream backend must do, written once.

A backend's test module subclasses it and supplies, as fixtures and hooks:

- ``server``: the shared server for the test (an address, or a feed server);
- ``fields_for(host, port, tls)``: the resource fields that reach a server at
  ``host:port`` (through a TLS front when ``tls`` is given);
- ``address(server)``: that server's ``(host, port)``;
- ``feed(server)``: an async context manager giving a :class:`Feed` that emits
  on a channel the resource can subscribe to;
- ``unwrap(data)``: the payload inside what a handler receives;
- class attributes: ``resource_type``, ``defaults`` (fast reconnects and
  timeouts for tests), ``lossless`` (a reload loses nothing: asserted, or only
  measured), ``tls_testable``.

Outages go through a :class:`TcpProxy` in front of the server, which the test
cuts and restores; the per-backend modules keep the tests that need a real
server crash (a killed redis-server, mosquitto, tansu).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.registry.support import fast_settings
from tests.support.brokers import HOST, BlackHole, TcpProxy, TlsFiles, task_census
from tests.support.handover import Collector, replace_under_load
from tests.support.services import free_port
from tests.support.stream_feeds import Feed
from tests.support.waiting import eventually
from xresource.backends.streams._base import EventStreamResource
from xresource.errors import XResourceConnectionError
from xresource.registry import Registry
from xresource.resource import State
from xresource.server.metrics import RegistryCollector

log = logging.getLogger("tests.streams")

REPLACE_FIGURES: dict[str, dict[str, float]] = {}
"""Lost and duplicated messages per type in the steady-publishing replace test (for the report)."""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# Tasks of the test's own servers and proxies (aiohttp handlers wait for a client's next
# request; proxy pumps end at their next read): not the resource's.
SERVER_SIDE = ("RequestHandler.", "TcpProxy.", "WsFeedServer.", "SseFeedServer.", "BlackHole.")


def client_tasks() -> Counter[str]:
    return Counter({name: n for name, n in task_census().items() if not name.startswith(SERVER_SIDE)})


class StreamContract:
    resource_type: ClassVar[type[EventStreamResource]]
    defaults: ClassVar[dict[str, Any]] = {"reconnect_interval": 0.05}
    lossless: ClassVar[bool] = True
    tls_testable: ClassVar[bool] = True
    replaces: ClassVar[int] = 20
    publish_rate: ClassVar[float] = 200.0
    block_is_lossless: ClassVar[bool] = True
    """Under ``block`` the driver stops reading (MQTT's cannot: its inbox drops, counted)."""
    bad_option: ClassVar[dict[str, Any] | None] = {"no_such_option": True}
    """A subscribe() option the type refuses (None: it passes options on to the server)."""

    # ---- hooks ----------------------------------------------------------------------------------

    def fields_for(self, host: str, port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def address(self, server: Any) -> tuple[str, int]:
        raise NotImplementedError

    def feed(self, server: Any) -> contextlib.AbstractAsyncContextManager[Feed]:
        raise NotImplementedError

    def unwrap(self, data: Any) -> Any:
        return data

    def channel(self) -> str:
        return f"xr-{uuid.uuid4().hex[:12]}"

    def make(self, server: Any, **fields: Any) -> EventStreamResource:
        host, port = self.address(server)
        return self.build(**{**self.fields_for(host, port), **fields})

    def build(self, **fields: Any) -> EventStreamResource:
        return self.resource_type(name="stream", **{**self.defaults, **fields})

    @contextlib.asynccontextmanager
    async def proxied(self, server: Any) -> AsyncIterator[tuple[TcpProxy, dict[str, Any], Any]]:
        """A proxy in front of a server (cut it for an outage), the fields that go through it,
        and the server behind it (for the feed)."""
        proxy = await TcpProxy(self.address(server)[1]).start()
        try:
            yield proxy, self.fields_for(HOST, proxy.port), server
        finally:
            await proxy.cut()

    async def subscribed(self, stream: EventStreamResource, channel: str, handler: Any) -> None:
        """Subscribe, and return once the server routes ``channel`` to ``stream``."""
        await stream.subscribe(channel, handler)
        await self.routed(channel)

    async def routed(self, channel: str) -> None:
        """Return once the server routes ``channel`` to every subscriber (where subscribing is one-way)."""

    # ---- round trip and bad input ---------------------------------------------------------------

    async def test_round_trip_to_handler_and_iterator(self, server: Any) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        async with self.make(server) as stream, self.feed(server) as feed:
            async with stream.messages() as iterator:
                await self.subscribed(stream, channel, got)
                for n in range(3):
                    await feed.emit(channel, {"n": n})
                await eventually(lambda: got.has(0, 1, 2), what="handler got 0..2")
                seen: list[int] = []
                while len(seen) < 3:
                    message = await asyncio.wait_for(anext(iterator), 10)
                    payload = self.unwrap(message.data)
                    if isinstance(payload, dict) and "n" in payload:
                        seen.append(payload["n"])
            assert seen == [0, 1, 2]
            assert got.order == [0, 1, 2]
            assert await stream.validate_connection() is True
            assert stream.stream_stats()["delivered"] >= 3

    async def test_bad_input_keeps_nothing(self, server: Any) -> None:
        async with self.make(server) as stream:
            with pytest.raises(ValueError, match="non-empty"):
                await stream.subscribe("")
            with pytest.raises(TypeError, match="not callable"):
                await stream.subscribe(self.channel(), handler="print")  # type: ignore[arg-type]
            if self.bad_option is not None:
                with pytest.raises(TypeError):
                    await stream.subscribe(self.channel(), **self.bad_option)
            with pytest.raises(TypeError, match="not callable"):
                stream.on_replaced(42)  # type: ignore[arg-type]
            assert stream.subscriptions == []
            assert stream._regs.handlers == {}

    async def test_unreachable_server_fails_fast(self, server: Any) -> None:
        stream = self.build(**self.fields_for(HOST, free_port()))
        with pytest.raises(XResourceConnectionError):
            await asyncio.wait_for(stream.connect(), 30)
        assert stream.state is State.FAILED
        assert stream.connection_state is State.FAILED
        await stream.disconnect()

    # ---- outages ------------------------------------------------------------------------------

    async def test_outage_restores_each_subscription_once(self, server: Any) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        async with (
            self.proxied(server) as (proxy, fields, behind),
            self.feed(behind) as feed,
            self.build(**fields, max_reconnect_attempts=50) as stream,
        ):
            await self.subscribed(stream, channel, got)
            await feed.emit(channel, {"n": 0})
            await eventually(lambda: got.has(0))
            tasks_before = task_census()
            await proxy.cut()
            await stream.wait_for_state(State.RECONNECTING, timeout=30)
            await proxy.start()
            await stream.wait_ready(timeout=30)
            assert stream.counters.reconnects >= 1
            await self.routed(channel)
            for n in range(1, 11):
                await feed.emit(channel, {"n": n})
            await eventually(lambda: got.has(*range(1, 11)), timeout=20)
            assert got.duplicates() == 0
            await eventually(lambda: not (client_tasks() - tasks_before), what="no task left behind")

    async def test_gives_up_then_iterators_raise_and_connect_recovers(self, server: Any) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        async with self.proxied(server) as (proxy, fields, behind), self.feed(behind) as feed:
            stream = self.build(**fields, max_reconnect_attempts=1, reconnect_interval=0.01)
            async with stream:
                await self.subscribed(stream, channel, got)
                iterator = stream.messages()
                await proxy.cut()
                await stream.wait_for_state(State.FAILED, timeout=60)
                assert stream.state is State.FAILED
                with pytest.raises(XResourceConnectionError, match="gave up"):
                    await asyncio.wait_for(anext(iterator), 10)  # failed, not ended quietly
                assert stream.replaced_by is None  # failed, not replaced
                await proxy.start()
                await stream.connect()  # what the registry's recovery does: registrations kept
                await self.routed(channel)
                await feed.ready()
                await feed.emit(channel, {"n": 1})
                await eventually(lambda: got.has(1), timeout=20)

    async def test_tls_through_a_tls_front(self, server: Any, tls_files: TlsFiles) -> None:
        if not self.tls_testable:
            pytest.skip("the server cannot be reached through a TLS front")
        channel = self.channel()
        got = Collector(self.unwrap)
        proxy = await TcpProxy(self.address(server)[1], tls=tls_files).start()
        try:
            async with (
                self.build(**self.fields_for(HOST, proxy.port, tls_files)) as stream,
                self.feed(server) as feed,
            ):
                await self.subscribed(stream, channel, got)
                await feed.emit(channel, {"n": 7})
                await eventually(lambda: got.has(7))
            without_ca = {**self.fields_for(HOST, proxy.port, tls_files), "ca_file": None}
            with pytest.raises(XResourceConnectionError, match=r"(?i)certificate|ssl|handshake"):
                await self.build(**without_ca, max_reconnect_attempts=0).connect()
        finally:
            await proxy.cut()

    # ---- backpressure ---------------------------------------------------------------------------

    async def test_block_loses_nothing_and_keeps_order(self, server: Any) -> None:
        channel = self.channel()
        gate = asyncio.Event()
        got: list[int] = []

        async def slow(data: Any) -> None:
            await gate.wait()
            payload = self.unwrap(data)
            if isinstance(payload, dict) and "n" in payload:
                got.append(payload["n"])

        async with self.make(server, queue_size=2) as stream, self.feed(server) as feed:
            await self.subscribed(stream, channel, slow)
            for n in range(20):
                await feed.emit(channel, {"n": n})
            await eventually(lambda: stream.counters.received >= 3, what="the buffer filled up")
            assert stream.stream_stats()["queued"] <= 2
            gate.set()
            if self.block_is_lossless:
                await eventually(lambda: len(got) == 20, timeout=20)
                assert got == list(range(20))
                assert stream.counters.dropped == 0
            else:
                await eventually(lambda: len(got) + stream.counters.dropped == 20, timeout=20)
                assert got == sorted(got)

    async def test_drop_oldest_counts_what_it_drops(self, server: Any) -> None:
        channel = self.channel()
        gate = asyncio.Event()
        got: list[int] = []

        async def slow(data: Any) -> None:
            await gate.wait()
            payload = self.unwrap(data)
            if isinstance(payload, dict) and "n" in payload:
                got.append(payload["n"])

        async with (
            self.make(server, queue_size=2, overflow="drop_oldest") as stream,
            self.feed(server) as feed,
        ):
            await self.subscribed(stream, channel, slow)
            for n in range(20):
                await feed.emit(channel, {"n": n})
            await eventually(
                lambda: stream.counters.dropped > 0, timeout=20, what="drops under drop_oldest"
            )
            gate.set()
            await eventually(lambda: 19 in got, timeout=20, what="the newest message survives")
            assert got == sorted(got)
            assert len(got) + stream.counters.dropped >= 20

    # ---- reload hand-over -----------------------------------------------------------------------

    async def test_take_over_moves_handlers_and_iterators(self, server: Any) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        replaced: list[tuple[EventStreamResource, EventStreamResource]] = []
        old = self.make(server)
        new = self.make(server)
        async with self.feed(server) as feed:
            try:
                await old.connect()
                await self.subscribed(old, channel, got)
                old.on_replaced(lambda before, after: replaced.append((before, after)))
                iterator = old.messages()
                await feed.emit(channel, {"n": 0})
                await eventually(lambda: got.has(0))
                await new.connect()
                await new.take_over(old)
                await old.disconnect()  # after the swap: must not end what it handed over
                assert replaced == [(old, new)]
                assert old.replaced_by is new
                assert new.subscriptions == [channel]
                for n in range(1, 4):
                    await feed.emit(channel, {"n": n})
                await eventually(lambda: got.has(1, 2, 3), timeout=20)
                seen = []
                while 3 not in seen:
                    payload = self.unwrap((await asyncio.wait_for(anext(iterator), 10)).data)
                    if isinstance(payload, dict) and "n" in payload:
                        seen.append(payload["n"])
                assert seen == [0, 1, 2, 3]
                assert got.duplicates() == 0
                # Code that kept the old instance reaches the new one.
                later = Collector(self.unwrap)
                other = self.channel()
                await old.subscribe(other, later)
                assert other in new.subscriptions
            finally:
                await new.disconnect()
                await old.disconnect()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(iterator), 10)  # the current instance's disconnect ends it

    async def test_replaces_under_steady_publishing(self, server: Any) -> None:
        channel = self.channel()

        async def subscribe(stream: EventStreamResource, handler: Collector) -> None:
            await self.subscribed(stream, channel, handler)

        async with self.feed(server) as feed:
            figures = await replace_under_load(
                lambda: self.make(server),
                subscribe,
                feed,
                channel,
                replaces=self.replaces,
                rate=self.publish_rate,
                collector=Collector(self.unwrap),
                expect_all=self.lossless,
            )
        REPLACE_FIGURES[self.resource_type.__name__] = figures.as_dict()
        log.warning("%s: %s", self.resource_type.__name__, figures)
        if self.lossless:
            assert figures.lost == 0
            assert figures.delivered_twice == 0
            assert figures.in_order

    async def test_replace_through_the_registry(self, server: Any, tmp_path: Path) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        folder = tmp_path / "resources.d"
        folder.mkdir()
        host, port = self.address(server)
        fields = {"name": "events", "type": self.resource_type.model_fields["type"].default}
        fields.update(
            {k: v for k, v in {**self.defaults, **self.fields_for(host, port)}.items() if v is not None}
        )
        manifest = folder / "events.yaml"
        manifest.write_text(yaml.safe_dump(fields))
        async with Registry(folder, settings=fast_settings()) as registry, self.feed(server) as feed:
            first = registry.get("events")
            assert isinstance(first, EventStreamResource)
            await self.subscribed(first, channel, got)
            await feed.emit(channel, {"n": 0})
            await eventually(lambda: got.has(0))
            manifest.write_text(yaml.safe_dump({**fields, "queue_size": 500}))
            result = await registry.reload()
            assert result.replaced == ["events"]
            second = registry.get("events")
            assert second is not first
            assert first.replaced_by is second
            await feed.emit(channel, {"n": 1})
            await eventually(lambda: got.has(1), timeout=20)
            await registry.wait_closed()
            assert first.state is State.CLOSED
            await feed.emit(channel, {"n": 2})
            await eventually(lambda: got.has(2), timeout=20)
            assert got.duplicates() == 0
            # What the hand-over counted is in /metrics.
            scraped = {m.name: m for m in RegistryCollector(registry).collect()}
            values = [
                s.value
                for s in scraped["xresource_stream_duplicates"].samples
                if s.labels["name"] == "events"
            ]
            assert values == [second.stream_stats()["duplicates"]]

    async def test_health_follows_the_real_connection(self, server: Any) -> None:
        async with self.proxied(server) as (proxy, fields, _), self.build(**fields) as stream:
            assert await stream.validate_connection() is True
            await proxy.cut()
            await stream.wait_for_state(State.RECONNECTING, timeout=30)
            assert stream.state is State.RECONNECTING
            assert await stream.validate_connection() is False  # down, whatever the supervisor hopes
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stream.connect(), 0.3)  # not "connected" while down
            await proxy.start()
            await asyncio.wait_for(stream.connect(), 30)  # returns once the supervisor reconnected
            assert stream.connection_state is State.READY
            assert await stream.validate_connection() is True

    async def test_registry_reports_recovered_only_when_up(self, server: Any, tmp_path: Path) -> None:
        folder = tmp_path / "resources.d"
        folder.mkdir()
        events: list[str] = []
        async with self.proxied(server) as (proxy, fields, _):
            manifest = {"name": "events", "type": self.resource_type.model_fields["type"].default}
            manifest.update({k: v for k, v in {**self.defaults, **fields}.items() if v is not None})
            manifest["max_reconnect_attempts"] = 1000
            (folder / "events.yaml").write_text(yaml.safe_dump(manifest))
            settings = fast_settings(health_interval=0.05, connect_timeout=0.3)
            async with Registry(folder, settings=settings) as registry:
                registry.on_event(lambda event: events.append(event.kind))
                assert registry.ready
                await proxy.cut()
                await eventually(lambda: not registry.ready, timeout=30, what="not ready while down")
                # The registry's own retry ran while the server was down and did not succeed.
                await eventually(
                    lambda: "did not finish" in (registry.status()["events"].error or ""), timeout=30
                )
                assert "recovered" not in events
                assert not registry.ready
                await proxy.start()
                await eventually(lambda: registry.ready, timeout=60, what="ready again once up")
                assert events.count("recovered") == 1

    async def test_silent_host_times_out_and_leaves_nothing(self, server: Any) -> None:
        hole = await BlackHole().start()
        try:
            tasks_before, fds_before = client_tasks(), open_fds()
            for attempt in range(3):
                stream = self.build(**self.fields_for(HOST, hole.port), timeout=0.5)
                if attempt < 2:  # the resource's own timeout
                    with pytest.raises(XResourceConnectionError):
                        await asyncio.wait_for(stream.connect(), 20)
                else:  # the registry's connect_timeout: the connect is cancelled
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(stream.connect(), 0.2)
                await asyncio.wait_for(stream.disconnect(), 5)
            await hole.stop()
            try:
                await eventually(lambda: not (client_tasks() - tasks_before), timeout=5)
            except AssertionError:
                raise AssertionError(f"tasks left: {client_tasks() - tasks_before}") from None
            await eventually(lambda: open_fds() <= fds_before, what="descriptors left")
        finally:
            await hole.stop()

    async def test_nothing_outlives_registry_stop(self, server: Any, tmp_path: Path) -> None:
        folder = tmp_path / "resources.d"
        folder.mkdir()
        async with self.proxied(server) as (proxy, fields, behind), self.feed(behind) as feed:
            await feed.emit(self.channel(), {"n": -1})  # the feed's own tasks are up and counted
            tasks_before, fds_before = client_tasks(), open_fds()
            manifest = {"name": "events", "type": self.resource_type.model_fields["type"].default}
            manifest.update({k: v for k, v in {**self.defaults, **fields}.items() if v is not None})
            (folder / "events.yaml").write_text(yaml.safe_dump(manifest))
            registry = Registry(folder, settings=fast_settings(health_interval=0.05, connect_timeout=0.5))
            await registry.start()
            stream = registry.get("events")
            assert isinstance(stream, EventStreamResource)
            await self.subscribed(stream, self.channel(), Collector(self.unwrap))
            iterator = stream.messages()
            await proxy.cut()  # stop while reconnecting: the hardest moment to end everything
            await stream.wait_for_state(State.RECONNECTING, timeout=30)
            await registry.stop()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(iterator), 5)
            try:
                await eventually(lambda: not (client_tasks() - tasks_before), timeout=5)
            except AssertionError:
                raise AssertionError(f"tasks left after stop(): {client_tasks() - tasks_before}") from None
            await eventually(lambda: open_fds() <= fds_before, what="descriptors left after stop()")

    # ---- nothing outlives disconnect ------------------------------------------------------------

    async def test_nothing_left_after_disconnect(self, server: Any) -> None:
        channel = self.channel()
        got = Collector(self.unwrap)
        async with self.proxied(server) as (proxy, fields, behind), self.feed(behind) as feed:
            await feed.emit(self.channel(), {"n": -1})  # the feed's own tasks are up and counted
            tasks_before, fds_before = client_tasks(), open_fds()
            stream = self.build(**fields)
            await stream.connect()
            await self.subscribed(stream, channel, got)
            iterator = stream.messages()
            await feed.emit(channel, {"n": 0})
            await eventually(lambda: got.has(0))
            await proxy.cut()
            await stream.wait_for_state(State.RECONNECTING, timeout=30)
            await proxy.start()
            await stream.wait_ready(timeout=30)
            await stream.disconnect()
            await iterator.aclose()
            try:
                await eventually(lambda: not (client_tasks() - tasks_before), timeout=5)
            except AssertionError:
                raise AssertionError(
                    f"tasks left after disconnect: {client_tasks() - tasks_before}"
                ) from None
            await eventually(lambda: open_fds() <= fds_before, what="descriptors left after disconnect")
