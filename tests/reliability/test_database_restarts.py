"""The registry with real database servers (issue 4's registry rules).

- an unreachable database fails within ``connect_timeout`` without hanging ``start()``;
- a changed pool size is a hot swap of pools with no failed query;
- a database that crashes and comes back: ``status()`` follows, and the
  resource heals by itself (private PostgreSQL and SecantusDB instances).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.support import eventually, fast_settings
from tests.support.mongo_server import SecantusServer, private_secantus
from tests.support.pg_server import PrivatePostgres, private_pg
from tests.support.services import free_port, require_service
from xresource.errors import XResourceConnectionError
from xresource.registry import Registry

__all__ = ["private_pg", "private_secantus"]  # fixtures used here


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


async def test_unreachable_databases_do_not_hang_start(manifests: Path, silent_port: int) -> None:
    closed = free_port()
    (manifests / "pg.yaml").write_text(
        f"name: pg\ntype: postgresql\nconnection_string: postgresql://app@127.0.0.1:{closed}/app\n"
        "connect_timeout: 1\n"
    )
    (manifests / "my.yaml").write_text(
        f"name: my\ntype: mysql\nconnection_string: mysql://app@127.0.0.1:{silent_port}/app\nconnect_timeout: 1\n"
    )
    (manifests / "mongo.yaml").write_text(
        f"name: mongo\ntype: mongodb\nconnection_string: mongodb://127.0.0.1:{closed}/app\nconnect_timeout: 1\n"
    )
    registry = Registry(manifests, settings=fast_settings(connect_timeout=1.5, retry_initial=30))
    started = time.monotonic()
    await registry.start()
    try:
        assert time.monotonic() - started < 5  # concurrent connects, each bounded
        status = registry.status()
        for name, port in (("pg", closed), ("my", silent_port), ("mongo", closed)):
            assert status[name].state == "failed", (name, status[name])
            assert f"127.0.0.1:{port}" in (status[name].error or ""), status[name].error
            with pytest.raises(XResourceConnectionError):
                registry.get(name)
    finally:
        await registry.stop()


async def test_pool_size_change_swaps_pools_without_a_failed_query(manifests: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    path = manifests / "pg.yaml"
    text = "name: pg\ntype: postgresql\nconnection_string: postgresql://postgres@127.0.0.1:5432/test\n"
    path.write_text(text + "max_pool_size: 2\nmin_pool_size: 1\n")
    registry = Registry(manifests, watch=True, settings=fast_settings(close_grace=0.5))
    await registry.start()
    failures: list[BaseException] = []
    done = 0
    stop = asyncio.Event()

    async def worker(use_lease: bool) -> None:
        nonlocal done
        while not stop.is_set():
            try:
                if use_lease:
                    async with registry.lease("pg") as db:
                        assert await db.fetchval("SELECT 1") == 1
                else:
                    assert await registry.get("pg").fetchval("SELECT 1") == 1
                done += 1
            except Exception as exc:
                failures.append(exc)
            await asyncio.sleep(0)

    try:
        first = registry.get("pg")
        assert first.get_pool_stats()["max"] == 2
        tasks = [asyncio.create_task(worker(i % 2 == 0)) for i in range(8)]
        await eventually(lambda: done > 50, what="queries running")
        path.write_text(text + "max_pool_size: 5\nmin_pool_size: 1\n")
        second = await eventually(lambda: registry.get("pg") is not first and registry.get("pg"), what="swap")
        assert second.get_pool_stats()["max"] == 5
        assert registry.status()["pg"].generation == 2
        before = done
        await eventually(lambda: done > before + 50, what="queries on the new pool")
        stop.set()
        await asyncio.gather(*tasks)
        await registry.wait_closed()
        assert first.state.value == "closed"
        assert failures == []
    finally:
        stop.set()
        await registry.stop()


@pytest.mark.slow
async def test_postgres_crash_and_restart_status_follows(
    manifests: Path, private_pg: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XR_LIVE_PG_PW", private_pg.password)
    (manifests / "pg.yaml").write_text(
        "name: pg\ntype: postgresql\n"
        f"connection_string: {private_pg.url(password='${env:XR_LIVE_PG_PW}')}\nconnect_timeout: 2\n"
    )
    registry = Registry(manifests, settings=fast_settings(health_interval=0.2, connect_timeout=2))
    await registry.start()
    try:
        assert registry.status()["pg"].state == "ready"
        await asyncio.to_thread(private_pg.stop, "immediate")
        await eventually(lambda: registry.status()["pg"].state == "failed", timeout=10, what="failed")
        assert "127.0.0.1" in (registry.status()["pg"].error or "")
        with pytest.raises(XResourceConnectionError):
            registry.get("pg")
        await asyncio.to_thread(private_pg.start)
        await eventually(lambda: registry.status()["pg"].state == "ready", timeout=15, what="recovered")
        assert await registry.get("pg").fetchval("SELECT 41 + 1") == 42
    finally:
        await registry.stop()
        if not private_pg._running:
            private_pg.start()


@pytest.mark.slow
async def test_mongodb_crash_and_restart_status_follows(
    manifests: Path, private_secantus: SecantusServer
) -> None:
    (manifests / "mongo.yaml").write_text(
        f"name: mongo\ntype: mongodb\nconnection_string: {private_secantus.url('live')}\nconnect_timeout: 2\n"
    )
    registry = Registry(manifests, settings=fast_settings(health_interval=0.2, connect_timeout=2))
    await registry.start()
    try:
        coll = registry.get("mongo").get_collection("things")
        await coll.insert_one({"n": 1})
        await asyncio.to_thread(private_secantus.kill)
        await eventually(lambda: registry.status()["mongo"].state == "failed", timeout=15, what="failed")
        await asyncio.to_thread(private_secantus.start)
        await eventually(lambda: registry.status()["mongo"].state == "ready", timeout=20, what="recovered")
        await registry.get("mongo").get_collection("things").insert_one({"n": 2})
    finally:
        await registry.stop()
