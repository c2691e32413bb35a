"""Starting a registry and getting resources out of it (docs/api.md and docs/architecture.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.registry.support import (
    ApiServer,
    black_hole,
    csv_manifest,
    eventually,
    fast_settings,
    rest_manifest,
)
from tests.support.services import free_port
from xresource.errors import (
    ManifestError,
    XResourceConnectionError,
    XResourceError,
    XResourceNotFoundError,
    XResourceStateError,
)
from xresource.registry import Registry
from xresource.resource import State


async def test_start_connects_every_resource_and_get_returns_it(
    manifests: Path, data: Path, api: ApiServer
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "tags: [sales]"))
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, settings=fast_settings()) as registry:
        assert registry.names() == ["a", "api"]
        assert "a" in registry
        assert "nope" not in registry
        assert len(registry) == 2
        a = registry.get("a")
        assert a.state is State.READY  # handed out already connected
        assert await a.read() == [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]
        assert (await registry.get("api").get(""))["ok"] is True
        assert registry.get("a") is a  # a lookup, not a new instance per call
        status = registry.status()
        assert {n: s.state for n, s in status.items()} == {"a": "ready", "api": "ready"}
        assert status["a"].generation == 1
        assert status["a"].error is None
        assert status["a"].path == str(manifests / "a.yaml")
    assert a.state is State.CLOSED  # leaving the block closes everything


async def test_start_raises_every_problem_and_connects_nothing(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    (manifests / "syntax.yaml").write_text("name: s\ntype: csv\nfile_path: [\n")
    (manifests / "typo.yaml").write_text("name: t\ntype: csv\nfile_path: x.csv\ndelimter: ';'\n")
    (manifests / "kind.yaml").write_text("name: k\ntype: postgres\n")
    registry = Registry(manifests, settings=fast_settings())
    with pytest.raises(ManifestError) as caught:
        await registry.start()
    files = {Path(p.file).name for p in caught.value.problems}
    assert files == {"syntax.yaml", "typo.yaml", "kind.yaml"}
    text = str(caught.value)
    assert "typo.yaml:4:1: t: delimter: unknown field; did you mean 'delimiter'?" in text
    assert "did you mean 'postgresql'?" in text
    assert api.requests == 0  # a broken deploy connects nothing
    assert registry.names() == []
    with pytest.raises(XResourceNotFoundError):
        registry.get("api")
    await registry.stop()  # stopping a registry that never started is harmless

    # Fixed, the same registry starts.
    for name in ("syntax.yaml", "typo.yaml", "kind.yaml"):
        (manifests / name).unlink()
    async with registry:
        assert registry.get("api").state is State.READY


async def test_missing_folder_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or directory"):
        await Registry(tmp_path / "nope", settings=fast_settings()).start()


async def test_unreachable_resource_does_not_hang_start(manifests: Path, data: Path) -> None:
    server, close = await black_hole()
    port = server.sockets[0].getsockname()[1]
    try:
        (manifests / "hang.yaml").write_text(rest_manifest("hang", f"http://127.0.0.1:{port}"))
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
        registry = Registry(manifests, settings=fast_settings(connect_timeout=0.3, retry_initial=30))
        started = time.perf_counter()
        await registry.start()
        elapsed = time.perf_counter() - started
        try:
            assert elapsed < 2.0, f"start took {elapsed:.2f}s with connect_timeout=0.3"
            assert registry.status()["hang"].state == "failed"
            assert "did not finish within 0.3s" in (registry.status()["hang"].error or "")
            assert registry.get("a").state is State.READY  # the others connected meanwhile
        finally:
            await registry.stop()
    finally:
        await close()


async def test_get_of_a_failed_resource_raises_with_the_cause(manifests: Path) -> None:
    port = free_port()  # nothing listens there
    (manifests / "down.yaml").write_text(rest_manifest("down", f"http://127.0.0.1:{port}"))
    async with Registry(manifests, settings=fast_settings(retry_initial=30)) as registry:
        status = registry.status()["down"]
        assert status.state == "failed"
        with pytest.raises(XResourceConnectionError) as caught:
            registry.get("down")
        message = str(caught.value)
        assert "rest_api resource 'down'" in message
        assert f"127.0.0.1:{port}" in message
        assert "Cannot connect" in message
        assert status.error
        assert "Cannot connect" in status.error
        with pytest.raises(XResourceConnectionError):
            async with registry.lease("down"):
                pass


async def test_unknown_name_raises_not_found_which_is_a_key_error(manifests: Path, data: Path) -> None:
    (manifests / "users.yaml").write_text(csv_manifest("users", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        with pytest.raises(KeyError):
            registry.get("nope")
        with pytest.raises(XResourceNotFoundError, match="did you mean 'users'"):
            registry.get("user")
        with pytest.raises(XResourceNotFoundError):
            await registry.aget("nope")
        with pytest.raises(XResourceNotFoundError):
            async with registry.lease("nope"):
                pass


async def test_lazy_resource_connects_on_first_aget_or_lease(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "connect: lazy"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        assert api.requests == 0  # not connected at start
        assert registry.status()["api"].state == "new"
        assert registry.ready  # a lazy resource that never connected does not make it unready
        with pytest.raises(XResourceStateError, match=r"connects lazily.*registry\.aget\('api'\)"):
            registry.get("api")
        resources = await asyncio.gather(registry.aget("api"), registry.aget("api"))
        assert resources[0] is resources[1]  # one connect, shared
        assert api.requests == 1  # the connect's health request
        assert registry.get("api") is resources[0]
        assert registry.status()["api"].state == "ready"


async def test_lazy_resource_connects_on_lease(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "connect: lazy"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        async with registry.lease("a") as a:
            assert len(await a.read()) == 2
        assert registry.get("a") is a


async def test_lazy_resource_that_cannot_connect_raises_and_retries_on_next_use(
    manifests: Path, data: Path
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "later.csv", "connect: lazy"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        with pytest.raises(XResourceConnectionError, match="does not exist"):
            await registry.aget("a")
        (data / "later.csv").write_text("x\n1\n")
        assert await (await registry.aget("a")).read() == [{"x": "1"}]


async def test_select_by_tag_folder_and_type(manifests: Path, data: Path, api: ApiServer) -> None:
    (manifests / "sales").mkdir()
    (manifests / "ops").mkdir()
    (manifests / "sales" / "orders.yaml").write_text(
        csv_manifest("orders", data / "a.csv", "tags: [sales, core]")
    )
    (manifests / "sales" / "api.yaml").write_text(rest_manifest("sales_api", api.url, "tags: [sales]"))
    (manifests / "ops" / "logs.yaml").write_text(csv_manifest("logs", data / "b.csv", "tags: [core]"))
    (manifests / "ops" / "lazy.yaml").write_text(
        csv_manifest("lazy_ops", data / "b.csv", "tags: [core]", "connect: lazy")
    )
    async with Registry(manifests, settings=fast_settings()) as registry:
        assert sorted(registry.select(tag="sales")) == ["orders", "sales_api"]
        assert sorted(registry.select(tag="core")) == ["logs", "orders"]  # only ready ones
        assert sorted(registry.select(folder="ops")) == ["logs"]
        assert sorted(registry.select(folder=manifests / "sales")) == ["orders", "sales_api"]
        assert sorted(registry.select(tag="sales", type="csv")) == ["orders"]
        assert registry.select(tag="nobody") == {}
        assert registry.select(folder="sal") == {}  # a folder, not a name prefix
        selected = registry.select(tag="sales")
        assert selected["orders"] is registry.get("orders")


async def test_stop_closes_everything_and_is_idempotent(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    registry = Registry(manifests, settings=fast_settings())
    await registry.start()
    await registry.start()  # a second start does nothing
    a = registry.get("a")
    await registry.stop()
    await registry.stop()
    assert a.state is State.CLOSED
    assert registry.names() == []


async def test_errors_are_in_the_tree(manifests: Path) -> None:
    (manifests / "down.yaml").write_text(rest_manifest("down", f"http://127.0.0.1:{free_port()}"))
    async with Registry(manifests, settings=fast_settings(retry_initial=30)) as registry:
        for call in (lambda: registry.get("down"), lambda: registry.get("nope")):
            with pytest.raises(XResourceError):
                call()


async def test_failed_resource_recovers_by_itself(manifests: Path) -> None:
    server = ApiServer()  # a port reserved, nothing listening yet
    (manifests / "api.yaml").write_text(rest_manifest("api", server.url))
    async with Registry(manifests, settings=fast_settings()) as registry:
        assert registry.status()["api"].state == "failed"
        assert not registry.ready
        kinds: list[str] = []
        registry.on_event(lambda e: kinds.append(e.kind))
        await server.start()
        try:
            api = await eventually(lambda: registry.ready and registry.get("api"), what="api recovered")
            assert (await api.get(""))["ok"] is True
            assert registry.status()["api"].error is None
            assert registry.status()["api"].generation == 1  # recovery is not a swap
            assert "recovered" in kinds
        finally:
            await server.stop()


async def test_cancelled_start_leaves_nothing_running(manifests: Path, data: Path, api: ApiServer) -> None:
    (manifests / "slow.yaml").write_text(rest_manifest("slow", api.url, "health_path: /gate"))
    (manifests / "fast.yaml").write_text(rest_manifest("fast", api.url))
    registry = Registry(manifests, watch=True, settings=fast_settings(connect_timeout=5))
    starting = asyncio.create_task(registry.start())
    await eventually(lambda: api.requests == 2, what="both connecting")
    fast = await eventually(lambda: registry.select().get("fast"), what="fast connected")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert registry.names() == []
    assert fast.state is State.CLOSED
    await eventually(lambda: api.open_connections <= 1, what="connections closed")  # /gate still waits
    api.gate.set()
    await eventually(lambda: api.open_connections == 0, what="connections closed")


async def test_ready_resource_whose_server_goes_away_fails_and_recovers(manifests: Path) -> None:
    server = await ApiServer().start()
    (manifests / "api.yaml").write_text(rest_manifest("api", server.url))
    try:
        async with Registry(manifests, settings=fast_settings(health_interval=0.05)) as registry:
            api = registry.get("api")
            await server.stop()
            await eventually(lambda: registry.status()["api"].state == "failed", what="health check noticed")
            with pytest.raises(XResourceConnectionError):
                registry.get("api")
            assert not registry.ready
            await server.start()
            await eventually(lambda: registry.ready, what="recovered")
            assert registry.get("api") is api  # the same instance: its pool healed
            assert (await api.get(""))["ok"] is True
    finally:
        await server.stop()
