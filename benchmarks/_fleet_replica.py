"""One replica of the fleet benchmark: a registry on the shared folder, under query load.

Run by ``bench_fleet`` as a separate process::

    python -m benchmarks._fleet_replica FOLDER SETTINGS_TOML KIND WORKERS

It prints JSON lines on stdout: ``{"ready": ...}`` once the registry serves,
``{"replaced": t}`` and ``{"closed": t}`` when a reload swapped the resource in and
when the replaced version was closed (wall-clock times, comparable across
processes). It reads commands on stdin: ``stop A B`` ends the load and prints
the latencies of the queries started in the steady window [A, B) and in this
replica's own reload (from the start of the reload that replaced the resource
to the close of the replaced version), and the number of failed queries.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from xresource import Registry
from xresource.registry.events import ReloadEvent
from xresource.settings import load_settings

NAME = "fleet_db"
THINK = 0.02
"""Seconds each worker waits between two queries (the load of one replica: WORKERS / THINK q/s at most)."""


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def query(registry: Registry, kind: str) -> None:
    resource = registry.get(NAME)  # every query asks the registry, as service code does
    if kind == "mongodb":
        await resource.get_collection("fleet").find_one({})
    else:
        await resource.fetchval("SELECT 1")


async def main(folder: str, settings_file: str, kind: str, workers: int) -> None:
    registry = Registry(folder, watch=True, settings=load_settings(settings_file, environ=False))
    samples: list[tuple[float, float]] = []  # (started at, seconds)
    failures: list[str] = []
    running = True
    waiters: set[asyncio.Task[None]] = set()

    reload_window: list[float] = []

    async def closed_later(replaced_at: float) -> None:
        await registry.wait_closed()
        closed_at = time.time()
        # The event comes at the end of the reload; it began this long before.
        began = replaced_at - (registry.last_reload_seconds or 0.0)
        reload_window[:] = [began, closed_at]
        say(replaced=replaced_at, began=began, closed=closed_at)

    def on_event(event: ReloadEvent) -> None:
        if event.name != NAME:
            return
        if event.kind == "replaced":
            task = asyncio.get_running_loop().create_task(closed_later(time.time()))
            waiters.add(task)
            task.add_done_callback(waiters.discard)
        elif event.kind in ("rejected", "failed"):
            say(problem=f"{event.kind}: {'; '.join(event.errors)}")

    async def worker() -> None:
        clock, wall = time.perf_counter, time.time
        while running:
            at, start = wall(), clock()
            try:
                await query(registry, kind)
            except Exception as exc:  # counted and shown; the load goes on
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                samples.append((at, clock() - start))
            await asyncio.sleep(THINK)

    async with registry:
        registry.on_event(on_event)
        await query(registry, kind)
        tasks = [asyncio.create_task(worker()) for _ in range(workers)]
        say(ready=time.time())
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        running = False
        await asyncio.gather(*tasks)
        bounds = [float(x) for x in line.split()[1:3]] if line.startswith("stop") else [0.0, 0.0]
        steady = [s for at, s in samples if bounds[0] <= at < bounds[1]]
        began, closed = reload_window or [0.0, 0.0]
        reload = [s for at, s in samples if began <= at <= closed]
        say(
            steady=[round(s, 6) for s in steady],
            reload=[round(s, 6) for s in reload],
            queries=len(samples),
            failed=len(failures),
            failures=sorted(set(failures))[:5],
        )
        for task in list(waiters):
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
