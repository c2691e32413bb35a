"""Soak: many reloads while tasks keep using the resources; nothing fails, nothing leaks.

The second soak writes a PostgreSQL manifest in place (truncate, then pieces with
pauses, as shell ``>`` and slow tools do) while 8 workers query through the
registry: zero failed queries, zero ``XResourceNotFoundError``, the generation
only goes up, one swap per edit.

For about half a minute (``XRESOURCE_SOAK_SECONDS``), manifests are edited one
after another (plain writes, temp-file-and-rename saves, some invalid edits that
are then fixed) and the watcher reloads them, while worker tasks keep calling
``get()`` and taking leases and really use what they get: they read CSV and JSON
files and call a real REST server. Afterwards: zero failed operations, at least
100 reloads, every replaced instance closed, the process holds no more file
descriptors than before, and the REST server holds no connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.registry.support import (
    ApiServer,
    csv_manifest,
    eventually,
    fast_settings,
    open_fds,
    rest_manifest,
    write_atomic,
)
from xresource.registry import Registry
from xresource.resource import State

SOAK_SECONDS = float(os.environ.get("XRESOURCE_SOAK_SECONDS", "30"))
MIN_RELOADS = 100


def _manifest(name: str, version: int, data: Path, api: ApiServer) -> str:
    # Each version changes a field that needs a new instance (a description alone would be
    # applied in place), so every edit is a real swap.
    description = f"description: version {version}"
    if name == "api":
        return rest_manifest(
            "api", api.url, description, "max_connections: 4", f"timeout: {20 + version % 2}"
        )
    if name == "doc":
        encoding = "utf-8" if version % 2 else "UTF-8"
        return f"name: doc\ntype: json\nfile_path: {data / 'doc.json'}\nencoding: {encoding}\n{description}\n"
    return csv_manifest(
        name, data / f"{name}.csv", description, f'quotechar: "{"|" if version % 2 else "~"}"'
    )


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 60)
async def test_soak_reloads_under_load(manifests: Path, data: Path, api: ApiServer) -> None:
    (data / "doc.json").write_text(json.dumps({"items": [1, 2, 3]}))
    names = ["a", "b", "api", "doc"]
    versions = dict.fromkeys(names, 0)
    for name in names:
        (manifests / f"{name}.yaml").write_text(_manifest(name, 0, data, api))
    # A replaced instance stays usable for close_grace, so code that took it with get()
    # just before a swap finishes; leases are waited for (up to drain_timeout).
    settings = fast_settings(close_grace=0.5, drain_timeout=10, health_interval=0.5)
    fds_before = open_fds()
    registry = Registry(manifests, watch=True, settings=settings)
    await registry.start()

    stop = asyncio.Event()
    failures: list[str] = []
    ops: dict[str, int] = {}
    instances: list[Any] = []  # every generation seen, to check each one is closed at the end

    async def worker(kind: str, body: Any) -> None:
        while not stop.is_set():
            try:
                await body()
                ops[kind] = ops.get(kind, 0) + 1
            except Exception as exc:
                failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0)

    def seen(resource: Any) -> Any:
        if not any(r is resource for r in instances):
            instances.append(resource)
        return resource

    async def get_csv() -> None:
        rows = await seen(registry.get("a")).read()
        assert rows == [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}], rows

    async def lease_csv() -> None:
        async with registry.lease("b") as b:
            seen(b)
            assert await b.read() == [{"id": "1", "city": "paris"}]
            await asyncio.sleep(0.02)
            async for chunk in b.read_stream(chunk_size=1):
                assert chunk == [{"id": "1", "city": "paris"}]

    async def get_json() -> None:
        assert (await seen(registry.get("doc")).read()) == {"items": [1, 2, 3]}

    async def get_api() -> None:
        assert (await seen(registry.get("api")).get(""))["ok"] is True

    async def lease_api() -> None:
        async with registry.lease("api") as client:
            seen(client)
            # Longer than a reload takes: leases regularly span a swap of their resource.
            assert (await client.get("slow", params={"delay": "0.08"}))["ok"] is True
            assert (await client.get(""))["ok"] is True

    bodies = {
        "get_csv": get_csv,
        "lease_csv": lease_csv,
        "get_json": get_json,
        "get_api": get_api,
        "get_api_2": get_api,
        "lease_api": lease_api,
        "lease_api_2": lease_api,
    }
    workers = [asyncio.create_task(worker(kind, body)) for kind, body in bodies.items()]
    max_server_connections = 0

    async def edit(step: int) -> None:
        nonlocal max_server_connections
        name = names[step % len(names)]
        path = manifests / f"{name}.yaml"
        if step % 7 == 3:
            # An invalid edit: reported, and the last good version keeps serving.
            running = registry.get(name)
            path.write_text(f"name: {name}\ntype: csv\nfile_path: [oops\n")
            await eventually(lambda: registry.status()[name].error, what=f"{name} rejected")
            assert registry.get(name) is running
            write_atomic(path, _manifest(name, versions[name], data, api))  # fixed: back as it was
            await eventually(lambda: registry.status()[name].error is None, what=f"{name} fixed")
            assert registry.get(name) is running
            return
        versions[name] += 1
        generation = registry.status()[name].generation
        text = _manifest(name, versions[name], data, api)
        if step % 2:
            write_atomic(path, text)
        else:
            path.write_text(text)
        await eventually(
            lambda: registry.status()[name].generation == generation + 1, what=f"{name} step {step}"
        )
        max_server_connections = max(max_server_connections, api.open_connections)

    started = time.monotonic()
    step = 0
    try:
        while time.monotonic() - started < SOAK_SECONDS or sum(registry.reload_counts.values()) < MIN_RELOADS:
            await edit(step)
            step += 1
            if step % 25 == 0:
                await registry.reload()  # explicit reloads interleave with the watcher's
            # Let the workers run across the new generation before the next edit.
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        reloads = sum(registry.reload_counts.values())
        await registry.stop()

    assert failures == [], f"{len(failures)} failed operations, first: {failures[:5]}"
    assert reloads >= MIN_RELOADS, registry.reload_counts
    assert registry.reload_counts["rejected"] >= step // 7
    assert all(count > 20 for count in ops.values()), ops
    assert len(instances) > len(names) * 10  # the workers really used many generations
    assert all(r.state is State.CLOSED for r in instances), [r.state for r in instances]
    assert max_server_connections <= 40, max_server_connections
    await eventually(lambda: api.open_connections == 0, timeout=5, what="server-side connections closed")
    await eventually(lambda: open_fds() <= fds_before, timeout=5, what=f"fds back to {fds_before}")


# ---- in-place writes under PostgreSQL query load ---------------------------------------------

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
IN_PLACE_EDITS = int(os.environ.get("XRESOURCE_SOAK_EDITS", "20"))
QUERY_WORKERS = 8


def _pg_manifest(step: int) -> str:
    # Each edit changes the pool size: a connection-affecting change, so each one is a replace.
    return (
        f"name: pg\ntype: postgresql\nconnection_string: {PG_URL}\n"
        f"min_pool_size: 1\nmax_pool_size: {3 + step % 2}\ndescription: edit {step}\n"
    )


async def _write_in_place(path: Path, text: str, pieces: int = 4, pause: float = 0.03) -> None:
    """Truncate, then write in pieces with pauses (shorter than the settle window), as ``>`` does."""
    size = -(-len(text) // pieces)
    with path.open("w") as handle:
        for start in range(0, len(text), size):
            await asyncio.sleep(pause)
            handle.write(text[start : start + size])
            handle.flush()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_soak_in_place_writes_under_postgres_query_load(manifests: Path) -> None:
    """Truncating writes in pieces while 8 workers query: nothing fails, generations only go up."""
    from tests.support.services import require_service
    from xresource.errors import XResourceNotFoundError
    from xresource.registry import ReloadEvent

    require_service("PostgreSQL", "127.0.0.1", 5432)
    path = manifests / "pg.yaml"
    path.write_text(_pg_manifest(0))
    settings = fast_settings(close_grace=0.5, drain_timeout=10, settle_ms=150, connect_timeout=10)
    stop = asyncio.Event()
    counts = {"queries": 0, "failed": 0, "not_found": 0}
    failures: list[str] = []
    generations: list[int] = []
    events: list[ReloadEvent] = []

    async with Registry(manifests, watch=True, settings=settings) as registry:
        registry.on_event(events.append)

        async def query() -> None:
            while not stop.is_set():
                try:
                    assert await registry.get("pg").fetchval("SELECT 1") == 1
                    counts["queries"] += 1
                except XResourceNotFoundError as exc:
                    counts["not_found"] += 1
                    failures.append(f"not found: {exc}")
                except Exception as exc:
                    counts["failed"] += 1
                    failures.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0)

        async def watch_generation() -> None:
            while not stop.is_set():
                status = registry.status().get("pg")
                generations.append(status.generation if status is not None else 0)
                await asyncio.sleep(0.002)

        tasks = [asyncio.create_task(query()) for _ in range(QUERY_WORKERS)]
        tasks.append(asyncio.create_task(watch_generation()))
        started = time.monotonic()
        try:
            for step in range(1, IN_PLACE_EDITS + 1):
                await _write_in_place(path, _pg_manifest(step))
                await eventually(
                    lambda step=step: registry.status()["pg"].generation == step + 1,
                    timeout=15,
                    what=f"edit {step} applied",
                )
                await asyncio.sleep(0.05)  # queries run on the new generation before the next edit
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        final = registry.status()["pg"]
        reloads = dict(registry.reload_counts)

    print(
        f"\nin-place soak: {IN_PLACE_EDITS} edits in {elapsed:.1f}s, {counts['queries']} queries by "
        f"{QUERY_WORKERS} workers, {counts['failed']} failed, {counts['not_found']} not found, "
        f"final generation {final.generation}, reloads {reloads}"
    )
    assert counts["failed"] == 0, failures[:5]
    assert counts["not_found"] == 0, failures[:5]
    assert counts["queries"] > IN_PLACE_EDITS * QUERY_WORKERS
    assert generations == sorted(generations), "the generation went down"
    assert min(generations) >= 1
    assert final.generation == IN_PLACE_EDITS + 1  # one swap per edit: no half-written version applied
    assert [e.kind for e in events if e.name == "pg"] == ["replaced"] * IN_PLACE_EDITS
