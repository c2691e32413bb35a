"""A fleet of replicas reloads a database resource: server connections and query latency.

Ten separate processes (``benchmarks/_fleet_replica.py``), each a ``Registry`` with
``watch=True`` on the same folder, serve one database resource (pool 5..5) under
query load: four workers per replica, each running one query every 20 ms through
``registry.get(...)``. After a steady spell the manifest's pool size changes to
6..6 (written atomically, as a deploy would) and every replica reloads it.

Connections are counted on the server side every 20 ms:

- PostgreSQL: ``pg_stat_activity`` rows with the resource's own ``application_name``;
- MySQL/MariaDB: ``information_schema.processlist`` rows of a database made for the run;
- MongoDB: ``serverStatus().connections.current`` of a SecantusDB server started for the
  run (it answers ``serverStatus``), less the benchmark's own client; each PyMongo client
  also keeps monitoring connections, which are part of the figure.

Rows per database and setting (``reload_jitter`` 0, then the fleet setting):

- peak / steady: the most connections seen from the edit until every replica has closed
  its replaced version, over the larger of the steady counts before and after the
  reload (target <= 1.2x);
- reload p99 / steady p99: the p99 latency of the queries each replica started during
  its own reload (from the start of the reload to the close of the replaced version)
  over the p99 of the steady spell (target <= 2x); the note gives the failed queries
  (target 0).

Run: ``.venv/bin/python -m benchmarks.bench_fleet [--quick] [--workers=N] [postgresql] [mysql] [mongodb]``
(``--quick``: the fleet setting only; ``--workers=N``: N query workers per replica instead of
4, to tell the reload's own cost from the load's: docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._report import Row, print_rows
from benchmarks.bench_databases import MYSQL_URL, PG_URL
from tests.support.services import port_open
from xresource.settings import RegistrySettings

REPLICAS = 10
WORKERS = 4
POOL_BEFORE, POOL_AFTER = 5, 6
FLEET_JITTER = 2.0
"""``reload_jitter`` of the fleet rows: each replica applies the change within 2 s."""
SURGE = 1
PEAK_TARGET = 1.2
P99_TARGET = 2.0
SAMPLE_EVERY = 0.02
STEADY_SECONDS = 3.0
AFTER_SECONDS = 2.0
ROOT = Path(__file__).resolve().parent.parent

Counter = Callable[[], Awaitable[int]]


@dataclass
class Replica:
    proc: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    result: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    problems: list[str] = field(default_factory=list)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if "ready" in message:
                self.ready.set()
            elif "closed" in message:
                self.closed.set()
            elif "problem" in message:
                self.problems.append(message["problem"])
            elif "steady" in message and not self.result.done():
                self.result.set_result(message)


@dataclass
class Target:
    """One database: the manifest of the resource, and how to count its server connections."""

    kind: str
    manifest: Callable[[int], str]
    count: Counter


def _settings(folder: Path, jitter: float) -> Path:
    """The replicas' settings file; the new settings only where this version has them."""
    fields = RegistrySettings.model_fields
    lines = ["[registry]"]
    if "reload_jitter" in fields:
        lines.append(f"reload_jitter = {jitter}")
    if "reload_surge" in fields:
        lines.append(f"reload_surge = {SURGE}")
    path = folder.parent / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _write(folder: Path, text: str) -> None:
    """Replace the manifest atomically (a dot file is not read as a manifest)."""
    tmp = folder / ".fleet_db.yaml.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / "fleet_db.yaml")


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan


async def _sample(count: Counter, into: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append((time.time(), await count()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def _scenario(target: Target, jitter: float, workers: int = WORKERS) -> tuple[Row, Row]:
    with tempfile.TemporaryDirectory(prefix="xr-fleet-") as tmp:
        folder = Path(tmp) / "resources.d"
        folder.mkdir()
        _write(folder, target.manifest(POOL_BEFORE))
        settings = _settings(folder, jitter)
        replicas = []
        for _ in range(REPLICAS):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks._fleet_replica",
                str(folder),
                str(settings),
                target.kind,
                str(workers),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("XRESOURCE_")},
            )
            replicas.append(Replica(proc))
        readers = [asyncio.create_task(r.read()) for r in replicas]
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        sampler: asyncio.Task[None] | None = None
        try:
            await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in replicas)), 120)
            await asyncio.sleep(1.0)  # every worker running
            sampler = asyncio.create_task(_sample(target.count, samples, stop))
            steady_from = time.time()
            await asyncio.sleep(STEADY_SECONDS)
            edited = time.time()
            _write(folder, target.manifest(POOL_AFTER))
            await asyncio.wait_for(asyncio.gather(*(r.closed.wait() for r in replicas)), 60 + jitter)
            reloaded = time.time()
            await asyncio.sleep(AFTER_SECONDS)
            after_from = time.time()
            await asyncio.sleep(AFTER_SECONDS)
            stop.set()
            await sampler
            for r in replicas:
                assert r.proc.stdin is not None
                r.proc.stdin.write(f"stop {steady_from} {edited}\n".encode())
                await r.proc.stdin.drain()
            results = await asyncio.wait_for(asyncio.gather(*(r.result for r in replicas)), 60)
        finally:
            stop.set()
            if sampler is not None:
                await asyncio.gather(sampler, return_exceptions=True)
            for r in replicas:
                if r.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        r.proc.stdin.close() if r.proc.stdin else None
            for r in replicas:
                try:
                    await asyncio.wait_for(r.proc.wait(), 30)
                except TimeoutError:
                    r.proc.kill()
                    await r.proc.wait()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    before = [n for t, n in samples if steady_from <= t < edited]
    during = [n for t, n in samples if edited <= t <= reloaded + 0.5]
    after = [n for t, n in samples if t >= after_from]
    steady = max(statistics.median(before), statistics.median(after))
    peak = max(during)
    steady_lat = [s for r in results for s in r["steady"]]
    reload_lat = [s for r in results for s in r["reload"]]
    failed = sum(r["failed"] for r in results)
    problems = sorted({p for r in replicas for p in r.problems} | {f for r in results for f in r["failures"]})
    label = f"{target.kind}: fleet of {REPLICAS}, pool {POOL_BEFORE}->{POOL_AFTER}, jitter {jitter:g}s"
    if workers != WORKERS:
        label += f", {workers} worker(s) each"
    setting = "" if "reload_surge" in RegistrySettings.model_fields else " (no reload_surge in this version)"
    connections = Row(
        figure=f"{label}, peak connections",
        value=peak,
        baseline=steady,
        ratio=peak / steady,
        unit="",
        target=f"<= {PEAK_TARGET}x",
        ok=peak / steady <= PEAK_TARGET,
        note=(
            f"steady {statistics.median(before):g} before, {statistics.median(after):g} after; peak {peak} "
            f"over {reloaded - edited:.1f} s from the edit to the last close{setting}"
        ),
    )
    p99_steady, p99_reload = _p99(steady_lat), _p99(reload_lat)
    latency = Row(
        figure=f"{label}, reload p99 latency",
        value=p99_reload * 1e3,
        baseline=p99_steady * 1e3,
        ratio=p99_reload / p99_steady,
        unit="ms",
        target=f"<= {P99_TARGET}x",
        ok=p99_reload / p99_steady <= P99_TARGET and failed == 0,
        note=(
            f"{len(reload_lat):,} queries during the replicas' reloads, {len(steady_lat):,} steady; "
            f"{failed} failed" + (f": {'; '.join(problems)[:300]}" if problems else "")
        ),
    )
    return connections, latency


@contextlib.asynccontextmanager
async def _postgresql() -> AsyncIterator[Target | None]:
    import asyncpg

    if not port_open("127.0.0.1", 5432):
        yield None
        return
    app = f"xrfleet-{uuid.uuid4().hex[:8]}"
    monitor = await asyncpg.connect(PG_URL)

    async def count() -> int:
        return int(
            await monitor.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app)
        )

    def manifest(pool: int) -> str:
        return (
            f"name: fleet_db\ntype: postgresql\nconnection_string: {PG_URL}\napplication_name: {app}\n"
            f"min_pool_size: {pool}\nmax_pool_size: {pool}\n"
        )

    try:
        yield Target("postgresql", manifest, count)
    finally:
        await monitor.close()


@contextlib.asynccontextmanager
async def _mysql() -> AsyncIterator[Target | None]:
    import aiomysql

    if not port_open("127.0.0.1", 3306):
        yield None
        return
    db = f"xrfleet_{uuid.uuid4().hex[:8]}"
    monitor = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    async with monitor.cursor() as cur:
        await cur.execute(f"CREATE DATABASE {db}")

    async def count() -> int:
        async with monitor.cursor() as cur:
            await cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (db,))
            row = await cur.fetchone()
        return int(row[0])

    base = MYSQL_URL.rsplit("/", 1)[0]

    def manifest(pool: int) -> str:
        return (
            f"name: fleet_db\ntype: mysql\nconnection_string: {base}/{db}\n"
            f"min_pool_size: {pool}\nmax_pool_size: {pool}\n"
        )

    try:
        yield Target("mysql", manifest, count)
    finally:
        async with monitor.cursor() as cur:
            await cur.execute(f"DROP DATABASE {db}")
        monitor.close()


@contextlib.asynccontextmanager
async def _mongodb() -> AsyncIterator[Target | None]:
    import pymongo

    from tests.support.mongo_server import SecantusServer, secantus_binary

    if secantus_binary() is None:
        yield None
        return
    server = SecantusServer()
    await asyncio.to_thread(server.start)
    monitor: Any = pymongo.AsyncMongoClient(f"mongodb://127.0.0.1:{server.port}", maxPoolSize=1)
    try:
        await monitor.admin.command("ping")
        await asyncio.sleep(0.5)
        status = await monitor.admin.command("serverStatus")
        own = int(status["connections"]["current"])  # the monitor's pool and monitoring connections

        async def count() -> int:
            status = await monitor.admin.command("serverStatus")
            return int(status["connections"]["current"]) - own

        def manifest(pool: int) -> str:
            return (
                f"name: fleet_db\ntype: mongodb\nconnection_string: mongodb://127.0.0.1:{server.port}/fleet\n"
                f"min_pool_size: {pool}\nmax_pool_size: {pool}\n"
            )

        yield Target("mongodb", manifest, count)
    finally:
        await monitor.close()
        await asyncio.to_thread(server.stop)


def _skipped(kind: str, why: str) -> Row:
    return Row(f"{kind}: fleet reload skipped", 0.0, None, None, "", f"<= {PEAK_TARGET}x", None, note=why)


async def _all(quick: bool, only: set[str] | None = None, workers: int = WORKERS) -> list[Row]:
    jitters = [FLEET_JITTER] if quick else [0.0, FLEET_JITTER]
    rows: list[Row] = []
    for kind, target in (("postgresql", _postgresql), ("mysql", _mysql), ("mongodb", _mongodb)):
        if only and kind not in only:
            continue
        async with target() as found:
            if found is None:
                rows.append(_skipped(kind, "no server"))
                continue
            for jitter in jitters:
                print(f"   {kind}, jitter {jitter:g}s", file=sys.stderr, flush=True)
                rows.extend(await _scenario(found, jitter, workers))
    return rows


def run(quick: bool = False, only: set[str] | None = None, workers: int = WORKERS) -> list[Row]:
    return asyncio.run(_all(quick, only, workers))


if __name__ == "__main__":
    started = time.perf_counter()
    kinds = {a for a in sys.argv[1:] if not a.startswith("-")}
    counts = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--workers=")]
    print_rows(
        run(quick="--quick" in sys.argv, only=kinds or None, workers=counts[-1] if counts else WORKERS)
    )
    print(f"\n{time.perf_counter() - started:.1f} s", file=sys.stderr)
