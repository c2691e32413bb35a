"""Collect every ``benchmarks/bench_*.py`` into one report card.

Each module's ``run(quick)`` returns rows measured against a baseline in the
same run; this prints them as one table with the machine's description and
writes ``benchmarks/results.json`` so runs can be compared.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from benchmarks._report import Row, print_rows

HERE = Path(__file__).parent
MODULES = [
    "bench_validate",
    "bench_files",
    "bench_registry",
    "bench_databases",
    "bench_pool_scaling",
    "bench_fleet",
    "bench_streams",
    "bench_http",
    "bench_telemetry",
]


def machine() -> dict[str, object]:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--only", nargs="*", default=None, help="module names, e.g. bench_files or files")
    args = parser.parse_args()
    wanted = None if args.only is None else {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
    unknown = sorted((wanted or set()) - set(MODULES))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = [m for m in MODULES if wanted is None or m in wanted]
    rows: list[Row] = []
    started = time.perf_counter()
    for name in names:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows.extend(module.run(quick=args.quick))
        except Exception as exc:
            traceback.print_exc()
            rows.append(
                Row(f"{name}: did not run", 0.0, None, None, "", "-", False, f"{type(exc).__name__}: {exc}")
            )
        print(f"   {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    info = machine()
    print(
        f"\nmachine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']}"
    )
    print_rows(rows)
    missed = [r for r in rows if r.ok is False]
    print(
        f"\n{len(rows)} figures, {len(missed)} missing their target, {time.perf_counter() - started:.0f} s in all"
    )
    (HERE / "results.json").write_text(
        json.dumps({"machine": info, "at": time.time(), "rows": [r.as_dict() for r in rows]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
