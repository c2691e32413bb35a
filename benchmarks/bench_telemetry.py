"""What OpenTelemetry tracing costs a query: off (the default) and on.

Off: ``instrument()`` has never run, or ``uninstrument()`` ran, so the classes
hold their own methods; the row checks that they are the very same function
objects (no wrapper, no flag test: zero by construction) and measures the
ratio anyway, against queries on the same resource, interleaved. Streams
the same way: publish and delivery (``Pipeline.offer``/``dispatch``) are
swapped in by ``instrument()`` and back by ``uninstrument()``, so a message
with tracing off runs the classes' own functions; the stream rows measure
Kafka produce-and-consume (Redis Pub/Sub without tansu) off and on, with the
trace context in the record headers.

On: an SDK ``TracerProvider`` with a span processor that exports to memory
(no network), the spans cleared after each run. The ratio is on / off for
``fetchval("SELECT 1")``, one after another, in alternating runs of 1,000
(median of the pairs): what a span per query costs on this machine.

Run: ``.venv/bin/python -m benchmarks.bench_telemetry [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._report import Row, print_rows
from tests.support.services import port_open

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
OFF_TARGET = 1.01

Query = Callable[[], Awaitable[object]]


async def _timed(query: Query, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await query()
    return time.perf_counter() - wall, time.process_time() - cpu


async def _pairs(
    query: Query, first: Callable[[], None], second: Callable[[], None], total: int, chunk: int
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Runs of ``chunk`` queries after ``first()`` and after ``second()``, alternating which goes first."""
    pairs = []
    for i in range(total // chunk):
        order = (first, second) if i % 2 == 0 else (second, first)
        results = {}
        for setup in order:
            setup()
            results[setup] = await _timed(query, chunk)
        pairs.append((results[first], results[second]))
    return pairs


def _row(figure: str, pairs: list[Any], target: str, ok: bool | None, note: str) -> Row:
    ratios = [a[0] / b[0] for a, b in pairs]
    cpu = statistics.median(a[1] / b[1] for a, b in pairs if b[1] > 0)
    value = sum(a[0] for a, _ in pairs)
    base = sum(b[0] for _, b in pairs)
    return Row(
        figure=figure,
        value=value,
        baseline=base,
        ratio=statistics.median(ratios),
        unit="s",
        target=target,
        ok=ok,
        note=f"median of {len(pairs)} pairs (spread {min(ratios):.2f}-{max(ratios):.2f}); client CPU {cpu:.3f}x; {note}",
    )


async def _bench(name: str, resource: Any, total: int, chunk: int) -> list[Row]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from xresource import telemetry

    cls = type(resource)
    original = cls.__dict__["fetchval"]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))

    def on() -> None:
        memory.clear()
        telemetry.instrument(provider)

    def off() -> None:
        telemetry.uninstrument()

    def nothing() -> None:
        pass

    async def query() -> object:
        return await resource.fetchval("SELECT 1")

    async with resource:
        await _timed(query, chunk)  # warm the pool and caches
        off_pairs = await _pairs(query, off, nothing, total, chunk)
        untouched = cls.__dict__["fetchval"] is original
        on_pairs = await _pairs(query, on, off, total, chunk)
        telemetry.uninstrument()
        spans = len(memory.get_finished_spans())
    return [
        _row(
            f"{name} fetchval, tracing off: {total:,} queries",
            off_pairs,
            f"<= {OFF_TARGET}x",
            untouched,
            "after instrument() and uninstrument() versus queries with no switch touched; "
            + (
                "the method is the class's own function: nothing added"
                if untouched
                else "METHOD STILL WRAPPED"
            ),
        ),
        _row(
            f"{name} fetchval, tracing on: {total:,} queries",
            on_pairs,
            "reported",
            None,
            f"a span per query (SDK, exported to memory; {spans:,} in the last run) versus tracing off",
        ),
    ]


async def _stream_rows(total: int, chunk: int) -> list[Row]:
    """Kafka produce-and-consume (Redis Pub/Sub without tansu): tracing off, and on."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from benchmarks import bench_streams
    from tests.support.brokers import start_tansu, tansu_binary
    from xresource import telemetry
    from xresource.backends.streams._pipeline import Pipeline
    from xresource.backends.streams.kafka import KafkaResource
    from xresource.backends.streams.redis_pubsub import RedisPubSubResource

    watched = [(Pipeline, "offer"), (Pipeline, "dispatch"), (KafkaResource, "produce")]
    watched.append((RedisPubSubResource, "publish"))
    originals = [cls.__dict__[name] for cls, name in watched]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))

    def on() -> None:
        memory.clear()
        telemetry.instrument(provider)

    def off() -> None:
        telemetry.uninstrument()

    def nothing() -> None:
        pass

    server = start_tansu() if tansu_binary() is not None else None
    if server is not None:
        name, side = "kafka produce+consume", bench_streams.KafkaResource(f"127.0.0.1:{server.port}")
    elif port_open("127.0.0.1", 6379):
        name, side = "redis_pubsub publish+handle", bench_streams.RedisResource()
    else:
        return [Row("stream tracing: skipped", 0.0, None, None, "", "-", None, "no tansu and no Redis")]

    async def messages() -> None:  # one timed unit: ``chunk`` messages, published and handled
        await side.run(chunk)

    try:
        await side.open()
        await side.run(chunk)  # warm up
        off_pairs = await _pairs(messages, off, nothing, total // chunk, 1)
        untouched = [cls.__dict__[attr] for cls, attr in watched] == originals
        on_pairs = await _pairs(messages, on, off, total // chunk, 1)
        telemetry.uninstrument()
        spans = len(memory.get_finished_spans())
    finally:
        await side.close()
        if server is not None:
            server.stop()
    return [
        _row(
            f"{name}, tracing off: {total:,} messages",
            off_pairs,
            f"<= {OFF_TARGET}x",
            untouched,
            "after instrument() and uninstrument() versus a stream no switch touched; "
            + (
                "publish and delivery are the classes' own functions: nothing added"
                if untouched
                else "STILL WRAPPED"
            ),
        ),
        _row(
            f"{name}, tracing on: {total:,} messages",
            on_pairs,
            "reported",
            None,
            f"a producer and a consumer span per message, trace context in the headers "
            f"({spans:,} spans in the last run) versus tracing off",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    total, chunk = (2_000, 200) if quick else (10_000, 1_000)

    async def main() -> list[Row]:
        from xresource.backends.databases.mysql import MySQLResource
        from xresource.backends.databases.postgresql import PostgresResource

        rows: list[Row] = []
        if port_open("127.0.0.1", 5432):
            pg = PostgresResource(name="bench_pg", connection_string=PG_URL, min_pool_size=1, max_pool_size=1)
            rows += await _bench("postgresql", pg, total, chunk)
        if port_open("127.0.0.1", 3306):
            my = MySQLResource(name="bench_my", connection_string=MYSQL_URL, min_pool_size=1, max_pool_size=1)
            rows += await _bench("mysql", my, total, chunk)
        rows += await _stream_rows(total, 500)
        return rows

    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        return [
            Row("telemetry: skipped", 0.0, None, None, "", "-", None, "opentelemetry-sdk is not installed")
        ]
    return asyncio.run(main())


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
