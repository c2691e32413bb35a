"""Shared output of the benchmark scripts: rows of figure, ratio and target.

Each ``benchmarks/bench_*.py`` exposes ``run(quick: bool = False) -> list[Row]`` and
prints its rows with :func:`print_rows` when run as a script; ``benchmarks/run``
collects every script's rows into one table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Row:
    figure: str  # what was measured, e.g. "postgresql: 10,000 fetchval"
    value: float  # the measured figure (seconds, rows/s, ...)
    baseline: float | None  # the same measured on the baseline in the same run
    ratio: float | None  # value / baseline, oriented so the target reads naturally
    unit: str  # unit of value/baseline
    target: str  # e.g. "<= 1.05x"
    ok: bool | None  # target met?
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_rows(rows: list[Row]) -> None:
    header = f"{'figure':<58} {'value':>14} {'baseline':>14} {'ratio':>8} {'target':>10}  ok"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = f"{r.baseline:.4g}" if r.baseline is not None else "-"
        ratio = f"{r.ratio:.3f}x" if r.ratio is not None else "-"
        ok = {True: "yes", False: "NO", None: "-"}[r.ok]
        print(f"{r.figure:<58} {r.value:>10.4g} {r.unit:<3} {base:>14} {ratio:>8} {r.target:>10}  {ok}")
        if r.note:
            print(f"    {r.note}")
