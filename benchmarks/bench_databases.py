"""Database resources versus the raw driver pool: 10,000 small queries each.

For each backend the resource and a raw pool of the driver are opened on the
same server with the same pool size, then run the same small query
10,000 times, once one after another and once from 10 concurrent tasks. The
two sides alternate in runs of 1,000 queries (10 pairs, the order swapped in
every pair); the ratio is resource time / raw time, the median over the
pairs (target: at most 1.05x). The machine is shared (the servers run on it
too), so its speed drifts; back-to-back pairs and the median keep that drift
out of the ratio. The note gives the spread, the ratio of the totals and the
ratio of client CPU time (what the resource layer itself can add).

- postgresql: ``fetchval("SELECT 1")`` versus ``asyncpg`` ``pool.fetchval``;
- mysql: ``fetchval("SELECT 1")`` versus the idiomatic aiomysql
  ``async with pool.acquire() ... async with conn.cursor()`` block;
- mongodb: ``get_collection(c).find_one({"_id": 1})`` versus ``find_one`` on a
  collection of a raw ``AsyncMongoClient`` (SecantusDB started for the run).

Run: ``.venv/bin/python -m benchmarks.bench_databases [--quick]``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._report import Row, print_rows
from tests.support.services import free_port, port_open, wait_port

PG_URL = os.environ.get("XRESOURCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("XRESOURCE_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/test")
POOL = 10
TASKS = 10
TARGET = 1.05

Query = Callable[[], Awaitable[object]]


async def _run(query: Query, total: int, tasks: int) -> tuple[float, float]:
    """Wall and process CPU seconds to run ``query`` ``total`` times spread over ``tasks`` tasks."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await query()

    share, extra = divmod(total, tasks)
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(tasks)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def _compare(name: str, resource_q: Query, raw_q: Query, total: int, chunk: int) -> list[Row]:
    """``total`` queries per side in alternating runs of ``chunk``; the ratio is the median over pairs."""
    rows = []
    for label, tasks in (("sequential", 1), (f"{TASKS} tasks", TASKS)):
        await _run(resource_q, chunk, tasks)  # warm both pools and caches
        await _run(raw_q, chunk, tasks)
        pairs = []
        for i in range(total // chunk):
            if i % 2 == 0:
                ours = await _run(resource_q, chunk, tasks)
                raw = await _run(raw_q, chunk, tasks)
            else:
                raw = await _run(raw_q, chunk, tasks)
                ours = await _run(resource_q, chunk, tasks)
            pairs.append((ours, raw))
        ratios = [ours[0] / raw[0] for ours, raw in pairs]
        ratio = statistics.median(ratios)
        value = sum(ours[0] for ours, _ in pairs)
        base = sum(raw[0] for _, raw in pairs)
        cpu = statistics.median(ours[1] / raw[1] for ours, raw in pairs)
        rows.append(
            Row(
                figure=f"{name}: {total:,} queries, {label}",
                value=value,
                baseline=base,
                ratio=ratio,
                unit="s",
                target=f"<= {TARGET}x",
                ok=ratio <= TARGET,
                note=(
                    f"median of {len(pairs)} pairs of {chunk:,} queries "
                    f"(spread {min(ratios):.2f}-{max(ratios):.2f}, totals {value / base:.3f}); "
                    f"client CPU {cpu:.3f}x; {total / value:,.0f} q/s through the resource"
                ),
            )
        )
    return rows


async def raw_mysql_pool(res: Any) -> Any:
    """A raw aiomysql pool to the resource's server, with the same size (the baseline)."""
    import aiomysql

    parts = res.url_parts()
    return await aiomysql.create_pool(
        host=parts.host,
        port=parts.port or 3306,
        user=parts.user,
        db=parts.database,
        minsize=POOL,
        maxsize=POOL,
        autocommit=True,
    )


async def raw_mysql_fetchval(raw: Any) -> Any:
    """``SELECT 1`` the idiomatic aiomysql way."""
    async with raw.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
        return (await cur.fetchone())[0]


def _skipped(name: str, why: str) -> Row:
    return Row(f"{name}: skipped", 0.0, None, None, "s", f"<= {TARGET}x", None, note=why)


async def bench_postgresql(total: int, chunk: int) -> list[Row]:
    import asyncpg

    from xresource.backends.databases.postgresql import PostgresResource

    if not port_open("127.0.0.1", 5432):
        return [_skipped("postgresql", "no server on 127.0.0.1:5432")]
    res = PostgresResource(name="bench_pg", connection_string=PG_URL, min_pool_size=POOL, max_pool_size=POOL)
    async with res:
        raw = await asyncpg.create_pool(PG_URL, min_size=POOL, max_size=POOL)
        try:
            return await _compare(
                "postgresql fetchval",
                lambda: res.fetchval("SELECT 1"),
                lambda: raw.fetchval("SELECT 1"),
                total,
                chunk,
            )
        finally:
            await raw.close()


async def bench_mysql(total: int, chunk: int) -> list[Row]:

    from xresource.backends.databases.mysql import MySQLResource

    if not port_open("127.0.0.1", 3306):
        return [_skipped("mysql", "no server on 127.0.0.1:3306")]
    res = MySQLResource(name="bench_my", connection_string=MYSQL_URL, min_pool_size=POOL, max_pool_size=POOL)
    async with res:
        raw = await raw_mysql_pool(res)

        async def raw_fetchval() -> object:
            return await raw_mysql_fetchval(raw)

        try:
            return await _compare(
                "mysql fetchval", lambda: res.fetchval("SELECT 1"), raw_fetchval, total, chunk
            )
        finally:
            raw.close()
            await raw.wait_closed()


async def bench_mongodb(total: int, chunk: int) -> list[Row]:
    from pymongo import AsyncMongoClient

    from xresource.backends.databases.mongodb import MongoResource

    server = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    if not Path(server).exists():
        return [_skipped("mongodb", "secantusd-py is not installed")]
    port = free_port()
    proc = subprocess.Popen(
        [server, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port("127.0.0.1", port)
        url = f"mongodb://127.0.0.1:{port}/bench"
        res = MongoResource(name="bench_mongo", connection_string=url, min_pool_size=POOL, max_pool_size=POOL)
        async with res:
            await res.get_collection("items").insert_one({"_id": 1, "v": "x"})
            raw = AsyncMongoClient(url, minPoolSize=POOL, maxPoolSize=POOL)
            raw_items = raw["bench"]["items"]
            try:
                return await _compare(
                    "mongodb find_one",
                    lambda: res.get_collection("items").find_one({"_id": 1}),
                    lambda: raw_items.find_one({"_id": 1}),
                    total,
                    chunk,
                )
            finally:
                await raw.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(quick: bool = False) -> list[Row]:
    total, chunk = (2_000, 200) if quick else (10_000, 1_000)

    async def main() -> list[Row]:
        rows: list[Row] = []
        rows += await bench_postgresql(total, chunk)
        rows += await bench_mysql(total, chunk)
        rows += await bench_mongodb(total, chunk)
        return rows

    return asyncio.run(main())


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
