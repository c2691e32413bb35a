"""``csv``: a delimited text file, read with the stdlib csv reader in worker threads.

With ``has_header`` (the default) the first non-blank row names the columns and
rows are dicts; without it rows are lists of strings. Blank lines are skipped.
A row shorter than the header is padded with ``None`` (as ``csv.DictReader``
does); a longer one is an error, since its extra values would be lost.

Rows are parsed by ``csv.reader`` and turned into dicts by a function generated
for the header (one constant-key dict display per row).
``csv.DictReader`` adds a method call and a ``dict(zip(...))`` per row, about
half as much again as the parsing; the generated function adds a third, so
``read_stream`` outruns a plain ``DictReader`` loop.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TextIO

from pydantic import Field, ValidationInfo, field_validator, model_validator

from xresource.backends.files._base import Chunks, Row, TextFileResource
from xresource.backends.files._columns import (
    Columns,
    TextRowTyper,
    format_rows,
    require_header,
    unknown_columns_error,
)
from xresource.errors import XResourceDataError

if TYPE_CHECKING:
    from xresource.backends.files.arrow import FrameLibrary

# One character that is not a line break (the schema says so too, so editors flag it).
_NOT_A_LINE_BREAK = r"^[^\r\n]$"


class CsvResource(TextFileResource):
    """A CSV (or other delimiter-separated) file; rows are dicts keyed by the header."""

    type: Literal["csv"] = "csv"
    supports_write: ClassVar[bool] = True

    delimiter: str = Field(default=",", min_length=1, max_length=1, pattern=_NOT_A_LINE_BREAK)
    """The one character that separates fields (``,``, ``;``, ``\\t``, ``|`` ...)."""
    quotechar: str = Field(default='"', min_length=1, max_length=1, pattern=_NOT_A_LINE_BREAK)
    """The one character that quotes fields containing the delimiter, quotes or newlines."""
    has_header: bool = True
    """Whether the first row names the columns: rows are then dicts, otherwise lists."""
    columns: Columns | None = None
    """Types of columns by header name (``str``, ``int``, ``float``, ``decimal``, ``bool``, ``date``,
    ``datetime``); rows then hold typed values, and an empty cell of a typed column (other than
    ``str``) reads as ``None``. Columns not listed stay text. Needs ``has_header``."""

    @field_validator("columns", mode="after")
    @classmethod
    def _columns_need_header(cls, value: Columns | None, info: ValidationInfo) -> Columns | None:
        return require_header(value, info.data.get("has_header", True))

    @model_validator(mode="after")
    def _usable_dialect(self) -> Self:
        if self.delimiter in "\r\n" or self.quotechar in "\r\n":
            raise ValueError("delimiter and quotechar cannot be a line break")
        if self.delimiter == self.quotechar:
            raise ValueError(f"delimiter and quotechar must differ (both are {self.delimiter!r})")
        return self

    def _metadata_details(self) -> dict[str, Any]:
        return {**super()._metadata_details(), "delimiter": self.delimiter, "has_header": self.has_header}

    # ---- reading --------------------------------------------------------------------------

    def _reader(self, handle: TextIO) -> Iterator[list[str]]:
        return csv.reader(handle, delimiter=self.delimiter, quotechar=self.quotechar)

    def _read_sync(self) -> list[Any]:
        rows: list[Any] = []
        for chunk in self._iter_chunks(sys.maxsize):
            rows.extend(chunk)
        return rows

    def _iter_chunks(self, chunk_size: int) -> Chunks:
        with self._open_text(newline="") as handle:
            reader = self._reader(handle)
            try:
                header = self._header(reader) if self.has_header else None
                if header and self.columns:
                    yield from self._typed_chunks(reader, header, chunk_size)
                    return
                take = self._take_lists if header is None else self._take_dicts
                while chunk := take(reader, header or [], chunk_size):
                    yield chunk
            except csv.Error as exc:
                raise self.data_error(str(exc), line=_line(reader)) from exc

    def _typed_chunks(self, reader: Iterator[list[str]], header: list[str], chunk_size: int) -> Chunks:
        assert self.columns is not None
        unknown = unknown_columns_error(self, self.columns, header, _line(reader))
        if unknown is not None:
            raise unknown
        typer = TextRowTyper(self, header, self.columns)
        while chunk := typer.take(reader, chunk_size):
            yield chunk

    def _header(self, reader: Iterator[list[str]]) -> list[str] | None:
        for row in reader:
            if row:
                seen: set[str] = set()
                for name in row:
                    if name in seen:
                        raise self.data_error(
                            f"the header names column {name!r} twice; rename it, or set has_header: false",
                            line=_line(reader),
                        )
                    seen.add(name)
                return row
        return None  # an empty file: no header, no rows

    def _take_dicts(self, reader: Iterator[list[str]], header: list[str], count: int) -> list[Any]:
        if not header:
            return []
        width = len(header)
        build = _row_builder(tuple(header))
        out: list[Any] = []
        append = out.append
        # One row at a time: each parsed list is dropped as soon as its dict exists, as in
        # DictReader (holding a batch of them alive made the garbage collector promote them
        # and measured slower).
        while len(out) < count:
            wanted = count - len(out)
            before, blank = len(out), 0
            for row in islice(reader, wanted):
                if len(row) == width:
                    append(build(row))
                elif not row:
                    blank += 1  # a blank line: skipped, so read on to fill the chunk
                else:
                    append(self._uneven_row(row, header, reader))
            if len(out) - before + blank < wanted:
                break  # the reader is exhausted
        return out

    def _uneven_row(self, row: list[str], header: list[str], reader: Iterator[list[str]]) -> Row:
        if len(row) > len(header):
            raise self.data_error(
                f"row has {len(row)} fields but the header has {len(header)}", line=_line(reader)
            )
        padded: Row = dict.fromkeys(header)
        padded.update(zip(header, row, strict=False))
        return padded

    @staticmethod
    def _take_lists(reader: Iterator[list[str]], header: list[str], count: int) -> list[Any]:
        out: list[Any] = []
        append = out.append
        while len(out) < count:
            wanted = count - len(out)
            before, blank = len(out), 0
            for row in islice(reader, wanted):
                if row:
                    append(row)
                else:
                    blank += 1
            if len(out) - before + blank < wanted:
                break
        return out

    # ---- columnar (the arrow extra) ---------------------------------------------------------

    def read_batches(self, batch_size: int = 65_536) -> AsyncIterator[Any]:
        """Yield Arrow record batches (``pyarrow.RecordBatch``) of at most ``batch_size`` rows each.

        Memory is bounded by a block of the file and the batch, not by the file. Parsed by
        Arrow's streaming CSV reader with this resource's dialect, encoding and
        header; ``columns`` give the Arrow types, other columns are strings.
        Needs ``pip install 'xresource[arrow]'``.
        """
        from xresource.backends.files import arrow  # pyarrow's glue, loaded on first use

        return arrow.stream(self, batch_size, arrow.csv_batches)

    async def read_frame(self, library: FrameLibrary = "pandas") -> Any:
        """The whole file as a pandas or polars ``DataFrame``, or a ``pyarrow.Table`` (``"arrow"``)."""
        from xresource.backends.files import arrow

        return await arrow.read_frame(self, library, arrow.csv_batches)

    # ---- writing --------------------------------------------------------------------------

    def _write_sync(self, data: Any) -> None:
        rows = _rows_of(self, data)
        if self.has_header:
            fieldnames: dict[str, None] = {}
            for index, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    raise self._bad_row(index, row, "a mapping (has_header is true)")
                fieldnames.update(dict.fromkeys(row))
            names = list(fieldnames)
            if any(not isinstance(name, str) for name in names):
                raise self.data_error("cannot write: column names must be strings")
            if self.columns and rows:
                # Typed values as the text they read back from; declared columns stay in the header.
                rows = format_rows(self, self.columns, rows)
                names += [name for name in self.columns if name not in fieldnames]

            def fill(handle: TextIO) -> None:
                if not names:
                    return  # no rows and so no header: an empty file reads back as no rows
                writer = csv.DictWriter(handle, names, restval="", **self._dialect())
                writer.writeheader()
                writer.writerows(rows)

        else:
            for index, row in enumerate(rows):
                if isinstance(row, str | bytes | Mapping) or not isinstance(row, Sequence):
                    raise self._bad_row(index, row, "a list of values (has_header is false)")

            def fill(handle: TextIO) -> None:
                csv.writer(handle, **self._dialect()).writerows(rows)

        self._atomic_write_text(fill, newline="")

    def _dialect(self) -> dict[str, Any]:
        return {"delimiter": self.delimiter, "quotechar": self.quotechar, "lineterminator": "\n"}

    def _bad_row(self, index: int, row: object, expected: str) -> XResourceDataError:
        return self.data_error(f"cannot write row {index}: expected {expected}, got {type(row).__name__}")


def _rows_of(resource: CsvResource, data: Any) -> list[Any]:
    if isinstance(data, str | bytes | Mapping) or not hasattr(data, "__iter__"):
        raise resource.data_error(f"cannot write: expected a list of rows, got {type(data).__name__}")
    return list(data)


@lru_cache(maxsize=64)
def _row_builder(header: tuple[str, ...]) -> Callable[[list[str]], Row]:
    """A function making a row dict from a list of exactly ``len(header)`` values.

    It is generated (as ``collections.namedtuple`` generates its methods) so that each row is
    one dict display with constant keys, about 1.6x faster than ``dict(zip(header, row))``,
    which is most of what reading rows costs after the parsing itself. The keys enter the code
    as ``repr`` literals of strings and the code runs with no builtins, so a header cannot
    inject anything.
    """
    items = ", ".join(f"{name!r}: row[{index}]" for index, name in enumerate(header))
    builder: Callable[[list[str]], Row] = eval(f"lambda row: {{{items}}}", {"__builtins__": {}})  # noqa: S307
    return builder


def _line(reader: Iterator[list[str]]) -> int | None:
    return getattr(reader, "line_num", None)
