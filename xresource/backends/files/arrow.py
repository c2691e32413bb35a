"""The columnar path: CSV and JSON files as ``pyarrow.RecordBatch`` es (the ``arrow`` extra).

``read_batches(batch_size)`` parses the file with Arrow's streaming readers on a thread of
its own (the parsers are C++ and release the GIL; the next batch is parsed while the caller
uses the current one), one block of ``BLOCK_BYTES`` at a time, and yields batches of at most
``batch_size`` rows: memory is bounded by the block size (Arrow reads a bounded number of
blocks ahead) and the batch, not by the file. A row longer than a block is read again with
larger blocks. Arrow's own threads are not used (``use_threads=False``): on small machines
they did not read faster, and with them its errors lose the record number. ``read_frame()``
gathers the batches into one ``pyarrow.Table``, a pandas ``DataFrame`` or a polars
``DataFrame``.

CSV (``pyarrow.csv.open_csv``) follows the resource: ``delimiter``, ``quotechar``,
``encoding``, ``has_header`` (without a header the columns are named ``f0``, ``f1`` ...)
and ``columns``. A declared column gets its Arrow type (``int`` int64, ``float`` float64,
``decimal`` decimal128(38, 9), ``bool`` bool, ``date`` date32, ``datetime`` timestamp[us],
with the UTC time zone when the file's first values carry an offset, ``str`` string);
every other column is a string column, as in ``read()``: Arrow would otherwise guess each
column's type from the first block and fail on a later block that does not fit the
guess. As in ``read()``, an empty cell is null in a typed column and ``""`` in a string
one, and blank lines are skipped. Unlike ``read()``, a row with fewer fields than the header
is an error (Arrow cannot pad it), and Arrow's number parsers are stricter than Python's
(no spaces or ``_`` around digits; at most 9 decimal places).

JSON lines (``lines: true``, ``pyarrow.json.open_json``) are read block by block too; Arrow
infers the schema from the first block, so a field that first appears, or changes type,
in a later block is an error. A JSON document that is a top-level array has no block
reader in Arrow: its items come from the bounded ``read_stream()`` parser (ijson), one
``RecordBatch.from_pylist`` per batch, in the schema of the first batch: slower, still
bounded.

Arrow's errors name a column and a record but not a line: on one, the file is read again
with Python's parser from the first row Arrow had not delivered, to name the line.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, aclosing, contextmanager
from itertools import islice
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from xresource._optional import require
from xresource.backends.files._columns import (
    FALSE_TEXTS,
    TEXT_PARSERS,
    TRUE_TEXTS,
    unknown_columns_error,
    value_error,
)

if TYPE_CHECKING:
    from xresource.backends.files.csv import CsvResource
    from xresource.backends.files.json import JsonResource
    from xresource.errors import XResourceDataError

DEFAULT_BATCH_ROWS = 65_536
# Arrow parses a block at a time and reads up to 32 blocks ahead of the parser (on its I/O
# threads): the block size bounds memory. 128 KiB measured as fast as 1 MiB on the benchmark
# file, with 2 MiB of peak memory added against 20-60 MiB. A row longer than a block is read
# again with larger blocks, up to MAX_BLOCK_BYTES.
BLOCK_BYTES = 128 << 10
MAX_BLOCK_BYTES = 64 << 20
SNIFF_ROWS = 100  # rows looked at to tell whether a datetime column carries offsets
FrameLibrary = Literal["arrow", "pandas", "polars"]
Batches = Generator[Any, None, None]

_COLUMN = re.compile(r"In CSV column #(\d+): (.*)", re.DOTALL)
_RECORD = re.compile(r"Row #(\d+): (.*)", re.DOTALL)
_INVALID_VALUE = re.compile(r"invalid value '(.*)'$", re.DOTALL)
_WIDTH = re.compile(r"Expected (\d+) columns, got (\d+)")


def pyarrow(resource: Any) -> ModuleType:
    """The pyarrow module, or the missing-extra error naming ``xresource[arrow]``."""
    return require("pyarrow", "arrow", type_name=resource.type)


def check_batch_size(resource: Any, batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{resource.label}: batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def stream(resource: Any, batch_size: int, source: Callable[[Any, int], Batches]) -> AsyncIterator[Any]:
    """``read_batches``: the arguments, the extra and the state are checked at the call."""
    check_batch_size(resource, batch_size)
    pyarrow(resource)
    resource.require_ready()
    return _stream(resource, source(resource, batch_size))


async def _stream(resource: Any, batches: Batches) -> AsyncIterator[Any]:
    async with resource.translate_errors("read_batches"), aclosing(_in_own_thread(batches)) as stream:
        async for batch in stream:
            yield batch


async def _in_own_thread(batches: Batches) -> AsyncGenerator[Any, None]:
    """Drive ``batches`` from one thread of its own, reading the next batch while this one is used.

    One thread, not the loop's executor (which ``read_stream`` uses): Arrow's parsing memory is
    then reused block after block. Spread over the executor's rotating threads, each thread's
    allocator arena kept its own high-water mark, and peak memory crept up with the file's
    size (measured: +25 MiB at 10 MB, +75 at 100 MB, +110 at 300 MB; one thread: about +33 at
    every size). A single-worker executor also runs the final ``close`` after any pending read,
    so the generator is never closed while it runs.
    """
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xresource-arrow")
    pending: asyncio.Future[Any] | None = None
    try:
        pending = loop.run_in_executor(worker, next, batches, None)
        while (batch := await pending) is not None:
            pending = loop.run_in_executor(worker, next, batches, None)
            yield batch
    finally:
        if pending is not None and not pending.done():
            pending.add_done_callback(_consume_outcome)
        worker.submit(batches.close)
        worker.shutdown(wait=False)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    # A read nobody waits for any more: fetch its outcome so asyncio does not log it.
    if not future.cancelled():
        future.exception()


async def read_frame(resource: Any, library: FrameLibrary, source: Callable[[Any, int], Batches]) -> Any:
    """The whole file as a ``pyarrow.Table``, or a pandas or polars ``DataFrame``."""
    if library not in ("arrow", "pandas", "polars"):
        raise ValueError(f"{resource.label}: library must be 'arrow', 'pandas' or 'polars', got {library!r}")
    pa = pyarrow(resource)
    frames = require(library, library, type_name=resource.type) if library != "arrow" else None
    batches = [batch async for batch in stream(resource, DEFAULT_BATCH_ROWS, source)]
    table = pa.Table.from_batches(batches) if batches else pa.table({})
    if library == "pandas":
        return table.to_pandas()
    if frames is not None:
        return frames.from_arrow(table)
    return table


def _sliced(batches: Iterator[Any], batch_size: int) -> Batches:
    """Batches of at most ``batch_size`` rows (slices share the block's memory)."""
    for batch in batches:
        rows = batch.num_rows
        if rows <= batch_size:
            if rows:
                yield batch
            continue
        for start in range(0, rows, batch_size):
            yield batch.slice(start, batch_size)


# ---- CSV --------------------------------------------------------------------------------------


def _arrow_type(pa: ModuleType, type_name: str, with_zone: bool) -> Any:
    if type_name == "datetime":
        return pa.timestamp("us", tz="UTC") if with_zone else pa.timestamp("us")
    return {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "decimal": pa.decimal128(38, 9),
        "bool": pa.bool_(),
        "date": pa.date32(),
    }[type_name]


def _preamble(resource: CsvResource) -> tuple[list[str], dict[str, bool]]:
    """The header (checked as ``read()`` checks it) and, per datetime column, whether it has offsets."""
    columns = resource.columns or {}
    with resource._open_text(newline="") as handle:
        reader = resource._reader(handle)
        try:
            if resource.has_header:
                header = resource._header(reader) or []
            else:
                first = next((row for row in reader if row), [])
                header = [f"f{index}" for index in range(len(first))]
            if not header:
                return [], {}  # an empty file: no header, no rows
            unknown = unknown_columns_error(resource, columns, header, getattr(reader, "line_num", None))
            if unknown is not None:
                raise unknown
            zones: dict[str, bool] = {}
            wanted = {header.index(n): n for n, t in columns.items() if t == "datetime"}
            for row in islice(reader, SNIFF_ROWS) if wanted else ():
                for index, name in wanted.items():
                    if name not in zones and index < len(row) and row[index]:
                        zones[name] = _has_offset(row[index])
        except csv.Error as exc:
            raise resource.data_error(str(exc), line=getattr(reader, "line_num", None)) from exc
    return header, zones


def _has_offset(text: str) -> bool:
    try:
        return TEXT_PARSERS["datetime"](text).tzinfo is not None
    except ValueError:
        return False  # Arrow will name the bad value


def csv_batches(resource: CsvResource, batch_size: int) -> Batches:
    """The file's record batches (a generator run in worker threads)."""
    pa = pyarrow(resource)
    pacsv = require("pyarrow.csv", "arrow", type_name=resource.type)
    header, zones = _preamble(resource)
    if not header:
        return  # an empty file: no header, no rows
    columns = resource.columns or {}
    types = {name: pa.string() for name in header}
    types.update({n: _arrow_type(pa, t, zones.get(n, False)) for n, t in columns.items()})
    convert = pacsv.ConvertOptions(
        column_types=types,
        null_values=[""],
        strings_can_be_null=False,
        true_values=TRUE_TEXTS,
        false_values=FALSE_TEXTS,
    )
    parse = pacsv.ParseOptions(
        delimiter=resource.delimiter,
        quote_char=resource.quotechar,
        newlines_in_values=True,
        ignore_empty_lines=True,
    )

    @contextmanager
    def reader(block_size: int) -> Iterator[Any]:
        read = pacsv.ReadOptions(
            block_size=block_size,
            use_threads=False,
            encoding="utf8" if resource.is_utf8 else resource.encoding,
            autogenerate_column_names=not resource.has_header,
        )
        with (
            resource.open_checked(resource.file_path, "file_path") as raw,
            pacsv.open_csv(raw, read, parse, convert) as batches,
        ):
            yield batches

    yield from _blockwise(
        pa, reader, batch_size, lambda done, message: _locate_csv_error(resource, header, done, message)
    )


def _blockwise(
    pa: ModuleType,
    reader: Callable[[int], AbstractContextManager[Iterator[Any]]],
    batch_size: int,
    locate: Callable[[int, str], XResourceDataError],
) -> Batches:
    """Batches from ``reader(block_size)``, growing the block for a row that does not fit one.

    Arrow parses whole rows within a block and fails on a row longer than the block: then the
    file is read again with blocks 8 times larger, past the rows already delivered.
    """
    delivered = 0
    block_size = BLOCK_BYTES
    while True:
        try:
            # Opening reads the first block, so it can fail like any later read.
            with reader(block_size) as batches:
                for batch in _sliced(_skipped(batches, delivered), batch_size):
                    delivered += batch.num_rows
                    yield batch
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            message = str(exc)
            if "straddl" in message and block_size < MAX_BLOCK_BYTES:
                block_size *= 8
                continue
            if "straddl" in message:
                message = f"a row is longer than {MAX_BLOCK_BYTES >> 20} MiB, the largest block read"
            raise locate(delivered, message) from None


def _skipped(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """``batches`` without their first ``rows`` rows."""
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        yield batch.slice(rows) if rows else batch
        rows = 0


def _locate_csv_error(
    resource: CsvResource, header: list[str], delivered: int, message: str
) -> XResourceDataError:
    """Arrow's error, with the line and column Python's parser finds it at.

    Arrow names the column (``In CSV column #2``), often the record (``Row #7``, counting the
    header, not blank lines) and the value: the rows after those Arrow delivered are read
    again until one matches.
    """
    message = message.strip()
    found = _COLUMN.match(message)
    index = int(found.group(1)) if found else None
    detail = found.group(2) if found else message
    numbered = _RECORD.match(detail)
    record = int(numbered.group(1)) if numbered else None
    detail = numbered.group(2) if numbered else detail
    invalid = _INVALID_VALUE.search(detail)
    bad_value = invalid.group(1) if invalid else None
    name = header[index] if index is not None and index < len(header) else None
    type_name = (resource.columns or {}).get(name or "", "str")
    first = delivered + (1 if resource.has_header else 0)  # records before the rows to look at
    with resource._open_text(newline="") as handle:
        reader = resource._reader(handle)
        records = (row for row in reader if row)
        for number, row in enumerate(islice(records, first, None), start=first + 1):
            line = getattr(reader, "line_num", None)
            if len(row) != len(header):
                return resource.data_error(
                    f"row has {len(row)} fields but the header has {len(header)}", line=line
                )
            if index is None or name is None:
                continue
            if bad_value is not None and row[index] == bad_value:
                return value_error(resource, name, type_name, bad_value, line=line, column=index + 1)
            if bad_value is None and number == record:
                return resource.data_error(
                    f"column {name!r} ({type_name}): {row[index]!r}: {detail}", line=line, column=index + 1
                )
    where = f"column {name!r}: " if name is not None else ""
    return resource.data_error(f"{where}{detail} (after data row {delivered})")


# ---- JSON ---------------------------------------------------------------------------------------


def json_batches(resource: JsonResource, batch_size: int) -> Batches:
    if getattr(resource, "lines", False):
        yield from _json_lines_batches(resource, batch_size)
    else:
        yield from _json_array_batches(resource, batch_size)


def _json_lines_batches(resource: JsonResource, batch_size: int) -> Batches:
    pa = pyarrow(resource)
    pajson = require("pyarrow.json", "arrow", type_name=resource.type)

    @contextmanager
    def reader(block_size: int) -> Iterator[Any]:
        options = pajson.ReadOptions(block_size=block_size, use_threads=False)
        with resource.open_checked(resource.file_path, "file_path") as raw:
            # Arrow reads UTF-8 only: another encoding is transcoded on the way in.
            source = raw
            if not resource.is_utf8:
                source = pa.transcoding_input_stream(pa.PythonFile(raw, mode="r"), resource.encoding, "utf-8")
            yield pajson.open_json(source, read_options=options)

    yield from _blockwise(
        pa, reader, batch_size, lambda done, message: _locate_json_error(resource, done, message)
    )


def _locate_json_error(resource: JsonResource, delivered: int, message: str) -> XResourceDataError:
    """Arrow names the row within its block: find the line that does not parse as JSON."""
    detail = re.sub(r" in row \d+$", "", message.strip())
    with resource._open_text() as handle:
        records = ((number, text) for number, text in enumerate(handle, start=1) if text.strip())
        for number, text in islice(records, delivered, None):
            try:
                json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                return resource.data_error(f"invalid JSON: {exc.msg}", line=number, column=exc.colno)
    return resource.data_error(f"{detail} (after record {delivered})")


def _json_array_batches(resource: JsonResource, batch_size: int) -> Batches:
    pa = pyarrow(resource)
    schema = None
    for index, chunk in enumerate(resource._iter_chunks(batch_size)):
        if not all(isinstance(item, dict) for item in chunk):
            raise resource.data_error("read_batches needs an array of objects (or JSON lines)")
        try:
            batch = pa.RecordBatch.from_pylist(chunk, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            start = index * batch_size
            raise resource.data_error(
                f"items {start}..{start + len(chunk) - 1} do not fit the columns of the first batch: {exc}"
            ) from None
        schema = batch.schema
        yield batch
