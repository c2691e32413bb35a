"""REST GET throughput through ``rest_api`` versus a raw aiohttp session.

The server is a small aiohttp app in its own process (so it does not share the
client's event loop or CPU core); both clients talk to it on loopback, get the
same small JSON document and parse it. Rounds alternate between the two
clients; the rates are medians over rounds and the ratio is the median of the
per-round ratios (robust against other load on the machine). Measured at one
request in flight (latency-bound) and at 16 (client-CPU-bound, where
per-request overhead shows most).

Run: ``python -m benchmarks.bench_http [--quick]``
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from benchmarks._report import Row, print_rows
from tests.support.services import free_port, wait_port

TARGET = 0.97  # issue 15: at the raw session's speed
DOCUMENT = {"id": 42, "name": "widget", "tags": ["a", "b"], "price": 9.5}


def _serve(port: int) -> None:
    from aiohttp import web

    body = json.dumps(DOCUMENT).encode()

    async def item(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/item", item)
    app.router.add_route("HEAD", "/", item)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


async def _rate(call: Callable[[], Awaitable[object]], requests: int, in_flight: int) -> float:
    per_worker = requests // in_flight

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return per_worker * in_flight / (time.perf_counter() - start)


async def _measure(url: str, requests: int, rounds: int, in_flight: int) -> tuple[float, float, float]:
    import aiohttp

    from xresource.backends.network.rest_api import RestApiResource

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def raw() -> object:
            async with session.get(f"{url}/item") as response:
                return await response.json()

        async with RestApiResource(name="bench", endpoint=url, max_connections=100) as api:

            async def resource() -> object:
                return await api.get("/item")

            assert await raw() == await resource() == DOCUMENT
            await _rate(raw, requests // 4, in_flight)  # warm up connections and caches
            await _rate(resource, requests // 4, in_flight)
            raw_rates, resource_rates = [], []
            for n in range(rounds):
                # Alternate which goes first, so neither always gets the warmer moment.
                pair = (raw, resource) if n % 2 == 0 else (resource, raw)
                rates = {fn: await _rate(fn, requests, in_flight) for fn in pair}
                raw_rates.append(rates[raw])
                resource_rates.append(rates[resource])
    # The ratio of each back-to-back pair cancels load that drifts between rounds
    # (other processes on the machine); its median is the figure reported.
    ratio = statistics.median(r / b for r, b in zip(resource_rates, raw_rates, strict=True))
    return statistics.median(resource_rates), statistics.median(raw_rates), ratio


def run(quick: bool = False) -> list[Row]:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    try:
        wait_port("127.0.0.1", port, timeout=30)
        url = f"http://127.0.0.1:{port}"
        requests, rounds = (200, 11) if quick else (300, 41)
        rows = []
        for in_flight in (1, 16):
            value, baseline, ratio = asyncio.run(_measure(url, requests, rounds, in_flight))
            rows.append(
                Row(
                    figure=f"rest_api: GET small JSON, {in_flight} in flight",
                    value=value,
                    baseline=baseline,
                    ratio=ratio,
                    unit="req/s",
                    target=f">= {TARGET}x",
                    ok=ratio >= TARGET,
                    note=(
                        f"medians of {rounds} alternating rounds of {requests} requests; "
                        "ratio: median of the per-round ratios; baseline: raw aiohttp session"
                    ),
                )
            )
        return rows
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
