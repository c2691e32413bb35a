"""File resources: CSV streaming throughput against csv.DictReader, and memory against file size.

Figures:
- rows/s of ``CsvResource.read_stream(chunk_size)`` against a plain ``csv.DictReader`` loop over
  the same file (median of 3 runs each, interleaved), as a ratio (target >= 1.0x);
- how much the peak resident memory of a process grows while it streams a 100 MB CSV, against
  a 10 MB one: memory is bounded by the chunk, so while the files are 10x apart the ratio
  stays near 1x (memory proportional to the file would give 10x; the target, <= 2.0x, leaves
  room for the allocator's slow creep of a MiB or so). The same for a JSON array (ijson);
- typed rows: ``read_stream`` with three of the seven columns declared (``columns``) against a
  DictReader loop converting the same columns by hand (target >= 1.0x);
- the columnar path (the ``arrow`` extra): rows/s of ``read_batches()`` against the plain
  DictReader loop (target >= 5.0x), untyped and typed, and its peak memory at two file sizes
  for CSV and JSON lines, as above. Skipped when pyarrow is not installed.

The data files are generated once and cached in ``benchmarks/.data/`` (gitignored).
``quick=True`` uses 20 MB / 2 MB files.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks._report import Row, print_rows

DATA = Path(__file__).resolve().parent / ".data"
MB = 1024 * 1024
CITIES = ["Amsterdam", "Berlin", "Lisbon", "Oslo", "Paris", "Rome", "Tallinn", "Vienna"]


def make_csv(size_mb: int) -> Path:
    """A CSV of realistic rows, at least ``size_mb`` MB; cached across runs."""
    path = DATA / f"rows_{size_mb}mb.csv"
    if path.exists() and path.stat().st_size >= size_mb * MB:
        return path
    DATA.mkdir(exist_ok=True)
    rng = random.Random(size_mb)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "email", "city", "amount", "created_at", "note"])
        row_id = 0
        while handle.tell() < size_mb * MB:
            batch = []
            for _ in range(10_000):
                row_id += 1
                batch.append(
                    [
                        row_id,
                        f"Customer {row_id}",
                        f"customer{row_id}@example.com",
                        rng.choice(CITIES),
                        f"{rng.random() * 1000:.2f}",
                        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
                        "ok" if row_id % 7 else "needs review, call back",
                    ]
                )
            writer.writerows(batch)
    tmp.replace(path)
    return path


def make_json(size_mb: int) -> Path:
    """A JSON array of objects, at least ``size_mb`` MB; cached across runs."""
    path = DATA / f"items_{size_mb}mb.json"
    if path.exists() and path.stat().st_size >= size_mb * MB:
        return path
    DATA.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write("[")
        item = 0
        while handle.tell() < size_mb * MB:
            parts = (
                json.dumps({"id": item + i, "name": f"item {item + i}", "price": (item + i) % 997 / 10})
                for i in range(10_000)
            )
            handle.write(("," if item else "") + ",".join(parts))
            item += 10_000
        handle.write("]")
    tmp.replace(path)
    return path


def make_jsonl(size_mb: int) -> Path:
    """JSON lines, one object per line, at least ``size_mb`` MB; cached across runs."""
    path = DATA / f"items_{size_mb}mb.jsonl"
    if path.exists() and path.stat().st_size >= size_mb * MB:
        return path
    DATA.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        item = 0
        while handle.tell() < size_mb * MB:
            handle.writelines(
                json.dumps({"id": i, "name": f"item {i}", "price": i % 997 / 10}) + "\n"
                for i in range(item, item + 10_000)
            )
            item += 10_000
    tmp.replace(path)
    return path


def dictreader_rows(path: Path) -> int:
    count = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for _row in csv.DictReader(handle):
            count += 1
    return count


# The declared types of the typed figures: three of the seven columns are converted.
TYPED_COLUMNS = {"id": "int", "amount": "decimal", "created_at": "datetime"}


def dictreader_typed_rows(path: Path) -> int:
    """A DictReader loop that converts the same columns by hand (what typed rows replace)."""
    from datetime import datetime
    from decimal import Decimal

    count = 0
    parse_datetime = datetime.fromisoformat
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            row["id"] = int(row["id"]) if row["id"] else None
            row["amount"] = Decimal(row["amount"]) if row["amount"] else None
            row["created_at"] = parse_datetime(row["created_at"]) if row["created_at"] else None
            count += 1
    return count


def typed_stream_rows(path: Path, chunk_size: int) -> int:
    return stream_rows(path, chunk_size, TYPED_COLUMNS)


def stream_rows(path: Path, chunk_size: int, columns: dict[str, str] | None = None) -> int:
    from xresource.backends.files.csv import CsvResource

    async def main() -> int:
        count = 0
        async with CsvResource(name="bench", file_path=path, columns=columns) as resource:
            async for chunk in resource.read_stream(chunk_size):
                count += len(chunk)
        return count

    return asyncio.run(main())


def batch_rows(path: Path, columns: dict[str, str] | None = None) -> int:
    from xresource.backends.files.csv import CsvResource

    async def main() -> int:
        count = 0
        async with CsvResource(name="bench", file_path=path, columns=columns) as resource:
            async for batch in resource.read_batches():
                count += batch.num_rows
        return count

    return asyncio.run(main())


def typed_batch_rows(path: Path) -> int:
    return batch_rows(path, TYPED_COLUMNS)


def timed(fn: Callable[..., int], *args: object) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the whole process (all threads), and fn's result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


# A child process measures how much its resident memory grows while it reads: the peak is
# reset after connecting (Linux /proc/self/clear_refs), so the interpreter and the imports
# count the same for every file.
_CHILD = """
import asyncio, gc, resource, sys
from pathlib import Path
from xresource.backends.files.{module} import {cls}

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1])

async def main():
    count = 0
    mode = sys.argv[2]
    async with {cls}(name="bench", file_path=Path(sys.argv[1]){fields}) as res:
        warm_up = res.read_batches(10) if mode == "batches" else res.read_stream(10)
        async for chunk in warm_up:  # imports and worker threads, before the mark
            break
        gc.collect()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        start = status("VmRSS:")
        if mode == "stream":
            async for chunk in res.read_stream(1000):
                count += len(chunk)
        elif mode == "batches":
            async for batch in res.read_batches():
                count += batch.num_rows
        else:
            count = len(await res.read())
        peak = status("VmHWM:")
    return count, peak - start

count, grown = asyncio.run(main())
pyarrow = sys.modules.get("pyarrow")
arrow_peak = pyarrow.default_memory_pool().max_memory() // 1024 if pyarrow else 0
print(count, grown, arrow_peak)
"""


def rss_growth_kib(
    path: Path, module: str, cls: str, mode: str = "stream", fields: str = ""
) -> tuple[int, int]:
    """Rows read and the growth of peak resident memory (KiB) while reading ``path``."""
    rows, grown, _ = _child(path, module, cls, mode, fields)
    return rows, grown


def _child(path: Path, module: str, cls: str, mode: str, fields: str) -> tuple[int, int, int]:
    """Rows, growth of peak resident memory (KiB), and pyarrow's pool peak (KiB, 0 without it)."""
    code = _CHILD.format(module=module, cls=cls, fields=fields)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), mode], cwd=root, capture_output=True, text=True, check=True
    )
    rows, grown, arrow_peak = out.stdout.split()
    return int(rows), int(grown), int(arrow_peak)


def batches_memory_kib(path: Path, module: str, fields: str) -> tuple[int, int, int]:
    """``read_batches`` in a child: rows, median of 3 resident-memory growths, Arrow pool peak.

    The resident figure swings between runs (allocators keep freed memory in thread caches
    for a while), so it is the median of three children.
    """
    cls = "CsvResource" if module == "csv" else "JsonResource"
    runs = [_child(path, module, cls, "batches", fields) for _ in range(3)]
    return runs[0][0], int(statistics.median(r[1] for r in runs)), max(r[2] for r in runs)


def run(quick: bool = False) -> list[Row]:
    big_mb, small_mb = (20, 2) if quick else (100, 10)
    big = make_csv(big_mb)
    rows: list[Row] = []

    # Throughput: the runs are interleaved so a noisy neighbour hits both sides alike. The best
    # run and the process CPU time (all threads, so the worker thread's parsing counts) are in
    # the note: on a shared machine they are the steadier figures.
    base_wall: list[float] = []
    base_cpu: list[float] = []
    ours: dict[int, tuple[list[float], list[float]]] = {1000: ([], []), 10_000: ([], [])}
    typed_walls: dict[str, list[float]] = {"ours": [], "by hand": []}
    typed_cpus: dict[str, list[float]] = {"ours": [], "by hand": []}
    have_arrow = importlib.util.find_spec("pyarrow") is not None
    arrow_walls: dict[str, list[float]] = {"untyped": [], "typed": []} if have_arrow else {}
    expected = 0
    for _ in range(3):
        wall, cpu, expected = timed(dictreader_rows, big)
        base_wall.append(wall)
        base_cpu.append(cpu)
        for chunk_size, (walls, cpus) in ours.items():
            wall, cpu, count = timed(stream_rows, big, chunk_size)
            assert count == expected, (count, expected)
            walls.append(wall)
            cpus.append(cpu)
        for label, typed_fn in (("ours", typed_stream_rows), ("by hand", dictreader_typed_rows)):
            wall, cpu, count = timed(typed_fn, big, 10_000) if label == "ours" else timed(typed_fn, big)
            assert count == expected, (count, expected)
            typed_walls[label].append(wall)
            typed_cpus[label].append(cpu)
        for label, arrow_fn in (("untyped", batch_rows), ("typed", typed_batch_rows)):
            if not have_arrow:
                break
            wall, _, count = timed(arrow_fn, big)
            assert count == expected, (count, expected)
            arrow_walls[label].append(wall)
    base_rate = expected / statistics.median(base_wall)
    for chunk_size, (walls, cpus) in ours.items():
        rate = expected / statistics.median(walls)
        cpu_ratio = statistics.median(base_cpu) / statistics.median(cpus)
        best_ratio = min(base_wall) / min(walls)
        rows.append(
            Row(
                figure=f"csv read_stream({chunk_size}) {big_mb} MB, {expected:,} rows",
                value=rate,
                baseline=base_rate,
                ratio=rate / base_rate,
                unit="rows/s",
                target=">= 1.0x",
                ok=rate >= base_rate,
                note=(
                    "baseline: a plain csv.DictReader loop over the same file; medians of 3 "
                    f"(best of 3: {best_ratio:.2f}x; by process CPU time: {cpu_ratio:.2f}x)"
                ),
            )
        )

    typed_rate = expected / statistics.median(typed_walls["ours"])
    by_hand_rate = expected / statistics.median(typed_walls["by hand"])
    rows.append(
        Row(
            figure=f"csv typed read_stream(10000) {big_mb} MB ({len(TYPED_COLUMNS)} of 7 columns typed)",
            value=typed_rate,
            baseline=by_hand_rate,
            ratio=typed_rate / by_hand_rate,
            unit="rows/s",
            target=">= 1.0x",
            ok=typed_rate >= by_hand_rate,
            note=(
                "baseline: a csv.DictReader loop converting the same columns by hand (int, Decimal, "
                f"datetime.fromisoformat); medians of 3 (by process CPU time: "
                f"{statistics.median(typed_cpus['by hand']) / statistics.median(typed_cpus['ours']):.2f}x); "
                f"against the plain, untyped DictReader: {typed_rate / base_rate:.2f}x"
            ),
        )
    )

    for label, walls in arrow_walls.items():
        rate = expected / statistics.median(walls)
        typed_note = f" ({', '.join(TYPED_COLUMNS)} typed)" if label == "typed" else " (every column text)"
        rows.append(
            Row(
                figure=f"csv read_batches() {label} {big_mb} MB",
                value=rate,
                baseline=base_rate,
                ratio=rate / base_rate,
                unit="rows/s",
                target=">= 5.0x",
                ok=rate >= 5 * base_rate,
                note=(
                    f"Arrow record batches{typed_note}, against the plain csv.DictReader loop; "
                    f"medians of 3; best of 3: {min(base_wall) / min(walls):.1f}x"
                ),
            )
        )

    # Memory against file size (Linux): what reading adds to the process's peak memory.
    if not Path("/proc/self/clear_refs").exists():
        return rows
    for label, module, cls, make, mode, fields in (
        ("csv", "csv", "CsvResource", make_csv, "stream", ""),
        ("json", "json", "JsonResource", make_json, "stream", ""),
        ("csv", "csv", "CsvResource", make_csv, "batches", ""),
        ("json lines", "json", "JsonResource", make_jsonl, "batches", ", lines=True"),
    ):
        if mode == "batches" and importlib.util.find_spec("pyarrow") is None:
            continue  # the arrow extra is not installed
        big_file, small_file = make(big_mb), make(small_mb)
        arrow_note = ""
        if mode == "batches":
            big_rows, big_kib, big_pool = batches_memory_kib(big_file, module, fields)
            small_rows, small_kib, small_pool = batches_memory_kib(small_file, module, fields)
            arrow_note = (
                f"; medians of 3; Arrow's own allocations peak at {big_pool / 1024:.1f} vs "
                f"{small_pool / 1024:.1f} MiB, the rest is Python objects and allocator caches"
            )
        else:
            big_rows, big_kib = rss_growth_kib(big_file, module, cls, mode, fields)
            small_rows, small_kib = rss_growth_kib(small_file, module, cls, mode, fields)
        _, read_kib = rss_growth_kib(small_file, module, cls, "read", fields)
        operation = "read_batches()" if mode == "batches" else "read_stream(1000)"
        rows.append(
            Row(
                figure=f"{label} {operation} peak memory added, {big_mb} MB vs {small_mb} MB file",
                value=big_kib / 1024,
                baseline=small_kib / 1024,
                ratio=big_kib / max(small_kib, 1),
                unit="MiB",
                target="<= 2.0x",
                ok=big_kib <= max(small_kib, 1024) * 2.0,
                note=(
                    f"{big_rows:,} vs {small_rows:,} rows (file sizes 10x apart); for scale, read() of "
                    f"the {small_mb} MB file adds {read_kib / 1024:.1f} MiB{arrow_note}"
                ),
            )
        )
    return rows


if __name__ == "__main__":
    print_rows(run(quick="--quick" in sys.argv))
