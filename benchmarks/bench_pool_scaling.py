"""Pool behaviour from 1 to 1,000 concurrent tasks, resource versus the raw driver pool.

For PostgreSQL (asyncpg) and MySQL (aiomysql) the resource, built with
``ResourceFactory.create``, and a raw pool of the driver are opened on the
same server with the same pool size (10, every connection opened up front).
At each concurrency level (1, 10, 100 and 1,000 tasks) a run is a fixed number
of ``SELECT 1`` queries spread evenly over the tasks; each query's latency is
taken with ``time.perf_counter`` around the call, so it includes the wait for
a pooled connection.

The machine is shared (the servers run on it too, and so does other work), so
its speed drifts by tens of percent within seconds. Two things keep that out
of the figures:

- every measurement is a pair: the same run on both sides back to back, in
  the order resource, raw, raw, resource (and the reverse in the next
  cycle), with runs kept short (0.05 to 1 s) so both halves of a pair see
  the same load; a ratio is the median over the pairs of resource / raw;
- the levels are visited in cycles (up, then down), a few pairs each, so
  every level's pairs are spread over the whole measuring time and a slow
  spell cannot bend the scaling curve. Cycles run until every level has at
  least three pairs, then while the time budget lasts (quick 8 s, full 50 s
  per backend).

Per level the rows give

- throughput, queries/s through the resource / through the raw pool
  (target >= 0.95x, issue 4's "at most 1.05x the raw time" as a rate; the
  note adds the client CPU time per query, resource / raw, which is what the
  resource layer itself can add and moves much less with the load);
- p99 latency, resource / raw (target <= 1.10x: no earlier issue sets a tail
  target, and a p99 moves more from run to run than a mean).

One summary row per backend then says whether the resource scales linearly or
better, from the per-level medians (the raw pool's are in the note beside
them). The rule, over the levels with c >= P tasks (P the pool size: the pool
is saturated and more tasks can only queue):

- throughput stays flat: the log-log slope of queries/s against c is
  >= -0.10, i.e. the time for a fixed number of queries grows by at most
  1.58x over 100x the tasks (room for the event loop's bookkeeping of 1,000
  waiting tasks and for the noise left in the medians);
- p99 latency grows at most linearly with c / P: the p99 added per extra
  task (the slope of p99 against c on the linear scale) does not rise from
  one step to the next, 10->100 then 100->1,000, by more than 1.10x (1 is
  linear growth, below 1 better; above 1 each waiting task would cost the
  tail more as the queue grows). A log-log slope is not used for this: from
  c = P to 10 P the tail goes from one round trip (no queue) to a queue, a
  one-off step that makes the log-log slope from P exceed 1 even when the
  growth beyond it is sublinear. It is printed in the note all the same.

The summary row's value is the resource's largest step-to-step ratio, its
baseline the raw pool's.

Run: ``.venv/bin/python -m benchmarks.bench_pool_scaling [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from benchmarks._report import Row, print_rows
from benchmarks.bench_databases import MYSQL_URL, PG_URL, POOL, raw_mysql_fetchval, raw_mysql_pool
from tests.support.services import port_open

LEVELS = (1, 10, 100, 1_000)
REPEATS = 3  # at least this many pairs per level
THROUGHPUT_TARGET = 0.95  # resource q/s / raw q/s
P99_TARGET = 1.10  # resource p99 / raw p99
QPS_SLOPE_MIN = -0.10  # log-log slope of q/s against tasks, levels >= pool size
P99_ACCEL_MAX = 1.10  # growth of the p99 added per extra task from step to step, levels >= pool size


@dataclass(frozen=True)
class Plan:
    """How much to measure, and the time budget of a backend."""

    chunks: dict[int, int]  # tasks -> queries per run (at least one per task)
    pairs: dict[int, int]  # tasks -> pairs per visit of the level (even: ABBA order)
    seconds: float  # measuring time per backend

    def __post_init__(self) -> None:
        # The first run after a change of level pays for it (the allocator grows
        # for more tasks, caches are cold); an even number of pairs in the order
        # resource, raw, raw, resource puts that cost on both sides alike.
        assert all(n % 2 == 0 for n in self.pairs.values()), "pairs per visit must be even"
        assert all(self.chunks[c] >= c for c in LEVELS), "a run needs at least one query per task"


# Runs are short so that the two sides of a pair see the same load of the
# shared machine; at 1,000 tasks the full run gives each task 2 queries, so the
# queue stays full for the whole run (quick: 1, a burst of 1,000). The budget
# keeps a run within its limit however fast the machine is at the moment: a
# fast machine gets more cycles, a slow one just enough for REPEATS pairs a level.
QUICK = Plan(
    chunks={1: 100, 10: 200, 100: 300, 1_000: 1_000},
    pairs={1: 2, 10: 2, 100: 2, 1_000: 2},
    seconds=8.0,
)
FULL = Plan(
    chunks={1: 100, 10: 250, 100: 500, 1_000: 2_000},
    pairs={1: 4, 10: 4, 100: 2, 1_000: 2},
    seconds=50.0,
)

Query = Callable[[], Awaitable[object]]


@dataclass
class Run:
    """One run of a fixed number of queries on one side (resource or raw pool)."""

    wall: float
    cpu: float
    latencies: list[float]

    @property
    def qps(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def cpu_per_query(self) -> float:
        return self.cpu / len(self.latencies)


async def _measure(query: Query, total: int, tasks: int) -> Run:
    """Run ``query`` ``total`` times spread over ``tasks`` tasks, timing each call."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker(count: int) -> None:
        record = latencies.append
        for _ in range(count):
            start = clock()
            await query()
            record(clock() - start)

    share, extra = divmod(total, tasks)
    # A collection left over from the previous run would land in this run's tail.
    gc.collect()
    cpu, start = time.process_time(), clock()
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(tasks)))
    return Run(clock() - start, time.process_time() - cpu, latencies)


async def _pair(
    resource_q: Query, raw_q: Query, tasks: int, chunk: int, resource_first: bool
) -> tuple[Run, Run]:
    """The same run on both sides back to back: (resource, raw)."""
    if resource_first:
        ours = await _measure(resource_q, chunk, tasks)
        raw = await _measure(raw_q, chunk, tasks)
    else:
        raw = await _measure(raw_q, chunk, tasks)
        ours = await _measure(resource_q, chunk, tasks)
    return ours, raw


@dataclass
class Level:
    """The pairs measured at one concurrency level."""

    tasks: int
    pairs: list[tuple[Run, Run]]  # (resource, raw)

    def median(self, side: int, attr: str) -> float:
        return float(statistics.median(getattr(pair[side], attr) for pair in self.pairs))

    def ratio(self, attr: str) -> tuple[float, float, float]:
        """Median and interquartile range over the pairs of resource / raw for ``attr``."""
        ratios = [getattr(ours, attr) / getattr(raw, attr) for ours, raw in self.pairs]
        if len(ratios) < 2:
            return ratios[0], ratios[0], ratios[0]
        q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return q2, q1, q3

    def queries(self) -> int:
        return sum(len(ours.latencies) for ours, _ in self.pairs)


async def _levels(resource_q: Query, raw_q: Query, plan: Plan) -> list[Level]:
    """Cycles through every level, a few pairs each, until the time budget is spent.

    Measuring the levels one after another would put a slow spell of the
    shared machine on one level only and bend the scaling curve; cycling puts
    every level's pairs across the whole measuring time instead. Levels go up
    in one cycle and down in the next, and the side that runs first swaps in
    every pair (see ``Plan``). Cycles run until every level has at least
    ``REPEATS`` pairs however long that takes, then further ones only while
    they should end within the budget.
    """
    # Warm both sides (statement caches, the event loop's task machinery) at a
    # saturating level before anything is measured.
    for query in (resource_q, raw_q):
        await _measure(query, 200, 100)
    pairs: dict[int, list[tuple[Run, Run]]] = {tasks: [] for tasks in LEVELS}
    clock = time.perf_counter
    deadline = clock() + plan.seconds
    min_cycles = max(math.ceil(REPEATS / n) for n in plan.pairs.values())
    cycle, last = 0, 0.0
    while cycle < min_cycles or clock() + last <= deadline:
        started = clock()
        for tasks in LEVELS if cycle % 2 == 0 else LEVELS[::-1]:
            for j in range(plan.pairs[tasks]):
                # Resource, raw, raw, resource (ABBA), starting with the other side
                # in the next cycle: neither side is favoured by its position.
                first = (cycle + j) % 2 == 0
                pairs[tasks].append(await _pair(resource_q, raw_q, tasks, plan.chunks[tasks], first))
        cycle += 1
        last = clock() - started
    return [Level(tasks, pairs[tasks]) for tasks in LEVELS]


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def _rows(name: str, levels: list[Level]) -> list[Row]:
    rows = []
    for level in levels:
        label = f"{name} pool {POOL}: {level.tasks:,} task{'s' if level.tasks > 1 else ''}"
        how = f"median of {len(level.pairs)} pairs of {level.queries() // len(level.pairs):,} queries"
        q, q_lo, q_hi = level.ratio("qps")
        cpu, _, _ = level.ratio("cpu_per_query")
        rows.append(
            Row(
                figure=f"{label}, throughput",
                value=level.median(0, "qps"),
                baseline=level.median(1, "qps"),
                ratio=q,
                unit="q/s",
                target=f">= {THROUGHPUT_TARGET}x",
                ok=q >= THROUGHPUT_TARGET,
                note=f"{how} (IQR {q_lo:.2f}-{q_hi:.2f}); client CPU per query {cpu:.3f}x raw",
            )
        )
        p, p_lo, p_hi = level.ratio("p99")
        rows.append(
            Row(
                figure=f"{label}, p99 latency",
                value=level.median(0, "p99") * 1e3,
                baseline=level.median(1, "p99") * 1e3,
                ratio=p,
                unit="ms",
                target=f"<= {P99_TARGET}x",
                ok=p <= P99_TARGET,
                note=f"{how} (IQR {p_lo:.2f}-{p_hi:.2f}); includes the wait for a pooled connection",
            )
        )
    rows.append(_summary(name, levels))
    return rows


def _accel(tasks: list[int], p99: list[float]) -> float:
    """The largest ratio of the p99 added per extra task between successive levels.

    ``(p99[i+1] - p99[i]) / (tasks[i+1] - tasks[i])`` divided by the same for
    the previous step: 1 is linear growth, below 1 better (each added task
    costs the tail less than the ones before), above 1 accelerating.
    """
    steps = [(p99[i + 1] - p99[i]) / (tasks[i + 1] - tasks[i]) for i in range(len(tasks) - 1)]
    worst = 0.0
    for before, after in itertools.pairwise(steps):
        if after <= 0:
            continue  # the tail did not grow at all over this step
        worst = max(worst, after / before if before > 0 else math.inf)
    return worst


def _summary(name: str, levels: list[Level]) -> Row:
    saturated = [lv for lv in levels if lv.tasks >= POOL]
    xs = [float(lv.tasks) for lv in saturated]

    def verdict(side: int) -> tuple[float, bool, str]:
        qps_slope = _slope(xs, [lv.median(side, "qps") for lv in saturated])
        p99 = [lv.median(side, "p99") for lv in saturated]
        accel = _accel([lv.tasks for lv in saturated], p99)
        ok = qps_slope >= QPS_SLOPE_MIN and accel <= P99_ACCEL_MAX
        times = "/".join(f"{1_000 / lv.median(side, 'qps'):.2f}" for lv in levels)
        p99s = "/".join(f"{lv.median(side, 'p99') * 1e3:.1f}" for lv in levels)
        per_task = "/".join(
            f"{(p99[i + 1] - p99[i]) / (saturated[i + 1].tasks - saturated[i].tasks) * 1e3:.3f}"
            for i in range(len(saturated) - 1)
        )
        detail = (
            f"s per 1,000 q {times} (q/s slope {qps_slope:+.2f}); p99 ms {p99s} (added per extra task "
            f"{per_task} ms, ratio {accel:.2f}; log-log slope {_slope(xs, p99):.2f})"
        )
        return accel, ok, detail

    ours_accel, ours_ok, ours_detail = verdict(0)
    raw_accel, raw_ok, raw_detail = verdict(1)
    tasks = "/".join(f"{lv.tasks:,}" for lv in levels)
    steps = ", ".join(f"{a.tasks:,}->{b.tasks:,}" for a, b in itertools.pairwise(saturated))
    return Row(
        figure=f"{name} pool {POOL}: {LEVELS[0]}->{LEVELS[-1]:,} tasks, linear or better",
        value=ours_accel,
        baseline=raw_accel,
        ratio=None,
        unit="x",
        target=f"<= {P99_ACCEL_MAX}x",
        ok=ours_ok,
        note=(
            f"{'yes' if ours_ok else 'NO'}. Rule, over the levels where the pool is saturated (tasks c >= "
            f"pool size {POOL}): throughput stays flat, log-log slope of q/s against c >= {QPS_SLOPE_MIN} "
            f"(the time for a fixed number of queries grows at most {10 ** (-2 * QPS_SLOPE_MIN):.2f}x over "
            f"100x the tasks); and p99 grows at most linearly with c/pool size: the p99 added per extra "
            f"task does not rise from one step to the next ({steps}) by more than {P99_ACCEL_MAX}x "
            f"(value = the largest such ratio, baseline = the raw pool's; 1 is linear, below 1 better). "
            f"Tasks {tasks}: resource {ours_detail}. Raw pool ({'meets' if raw_ok else 'misses'} the "
            f"rule) {raw_detail}"
        ),
    )


def _skipped(name: str, why: str) -> Row:
    return Row(f"{name}: skipped", 0.0, None, None, "q/s", f">= {THROUGHPUT_TARGET}x", None, note=why)


async def bench_postgresql(plan: Plan) -> list[Row]:
    import asyncpg

    from xresource.backends.databases.postgresql import PostgresResource
    from xresource.factory import ResourceFactory

    if not port_open("127.0.0.1", 5432):
        return [_skipped("postgresql", "no server on 127.0.0.1:5432")]
    res = cast(
        PostgresResource,
        ResourceFactory.create(
            "postgresql",
            name="bench_pg_scaling",
            connection_string=PG_URL,
            min_pool_size=POOL,
            max_pool_size=POOL,
        ),
    )
    await res.connect()
    try:
        raw = await asyncpg.create_pool(PG_URL, min_size=POOL, max_size=POOL)
        try:
            levels = await _levels(lambda: res.fetchval("SELECT 1"), lambda: raw.fetchval("SELECT 1"), plan)
        finally:
            await raw.close()
    finally:
        await res.disconnect()
    return _rows("postgresql", levels)


async def bench_mysql(plan: Plan) -> list[Row]:

    from xresource.backends.databases.mysql import MySQLResource
    from xresource.factory import ResourceFactory

    if not port_open("127.0.0.1", 3306):
        return [_skipped("mysql", "no server on 127.0.0.1:3306")]
    res = cast(
        MySQLResource,
        ResourceFactory.create(
            "mysql",
            name="bench_my_scaling",
            connection_string=MYSQL_URL,
            min_pool_size=POOL,
            max_pool_size=POOL,
        ),
    )
    await res.connect()
    try:
        raw = await raw_mysql_pool(res)

        async def raw_fetchval() -> Any:
            return await raw_mysql_fetchval(raw)

        try:
            levels = await _levels(lambda: res.fetchval("SELECT 1"), raw_fetchval, plan)
        finally:
            raw.close()
            await raw.wait_closed()
    finally:
        await res.disconnect()
    return _rows("mysql", levels)


def run(quick: bool = False) -> list[Row]:
    plan = QUICK if quick else FULL

    async def main() -> list[Row]:
        rows: list[Row] = []
        rows += await bench_postgresql(plan)
        rows += await bench_mysql(plan)
        return rows

    return asyncio.run(main())


if __name__ == "__main__":
    started = time.perf_counter()
    print_rows(run(quick="--quick" in sys.argv))
    print(f"\n{time.perf_counter() - started:.1f} s", file=sys.stderr)
