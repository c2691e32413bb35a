"""``excel``: one sheet of an .xlsx workbook, read with openpyxl in read-only mode.

Read-only mode parses the sheet's XML as it is iterated, so ``read_stream``
holds one chunk of rows at a time. Cells give their cached values
(``data_only``): a formula gives the result Excel last computed (``None`` in a
file no spreadsheet application has recalculated).

With ``has_header`` the first non-empty row names the columns (a blank header
cell is named after its column letter, ``"C"``) and rows are dicts; without it
rows are lists (without trailing empty cells). Empty rows are skipped. ``list_collections_or_tables`` gives
the workbook's sheet names.

``write`` replaces the workbook with a single sheet. It refuses to run when the
workbook holds other sheets, since they would be lost.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from types import ModuleType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from xresource._optional import require
from xresource.backends.files._base import Chunks, FileResource, Row
from xresource.backends.files._columns import CellRowTyper, Columns, require_header, unknown_columns_error

_Values = tuple[Any, ...]


class ExcelResource(FileResource):
    """One sheet of an Excel workbook (.xlsx, .xlsm); rows are dicts keyed by the header."""

    type: Literal["excel"] = "excel"
    install_extra: ClassVar[str | None] = "excel"
    supports_write: ClassVar[bool] = True

    sheet: str | Annotated[int, Field(ge=0, strict=True)] | None = None
    """The sheet to read: its name, or its 0-based position; the first sheet when not set."""
    has_header: bool = True
    """Whether the first row names the columns: rows are then dicts, otherwise lists."""
    columns: Columns | None = None
    """Types of columns by header name (``str``, ``int``, ``float``, ``decimal``, ``bool``, ``date``,
    ``datetime``): cells are converted (a whole-number float to ``int``, a date-time at midnight
    to ``date`` ...), and an empty cell reads as ``None``. Columns not listed keep the cell's
    value. Needs ``has_header``."""

    @field_validator("columns", mode="after")
    @classmethod
    def _columns_need_header(cls, value: Columns | None, info: ValidationInfo) -> Columns | None:
        return require_header(value, info.data.get("has_header", True))

    def _metadata_details(self) -> dict[str, Any]:
        return {**super()._metadata_details(), "sheet": self.sheet, "has_header": self.has_header}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        await super()._connect()
        self._openpyxl()  # a missing extra should fail the connect, not the first read
        # Opening the workbook finds a file that is not one, and a sheet that is not there.
        await asyncio.to_thread(self._check_sheet)

    async def list_collections_or_tables(self) -> list[str]:
        """The names of the workbook's sheets, in order."""
        self.require_ready()
        async with self.translate_errors("list_collections_or_tables"):
            return await asyncio.to_thread(self._sheet_names)

    def _openpyxl(self) -> ModuleType:
        return require("openpyxl", "excel", type_name=self.type)

    @contextmanager
    def _workbook(self) -> Iterator[Any]:
        openpyxl = self._openpyxl()
        # Opened here (checked: a regular file within the allowed roots), closed here: openpyxl
        # does not close a file object it was given.
        with self.open_checked(self.file_path, "file_path") as handle:
            try:
                workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
            except OSError:
                raise  # the file went away or cannot be read: a connection problem, translated as such
            except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a corrupt file
                raise self.data_error(f"not a valid Excel workbook (.xlsx, .xlsm): {exc}") from None
            try:
                yield workbook
            finally:
                workbook.close()

    def _sheet_names(self) -> list[str]:
        with self._workbook() as workbook:
            return list(workbook.sheetnames)

    def _check_sheet(self) -> None:
        with self._workbook() as workbook:
            self._worksheet(workbook)

    def _sheet_name(self, names: Sequence[str]) -> str:
        listed = ", ".join(repr(name) for name in names)
        if self.sheet is None:
            if not names:
                raise self.data_error("the workbook has no sheets")
            return names[0]
        if isinstance(self.sheet, int):
            if self.sheet >= len(names):
                raise self.data_error(
                    f"there is no sheet at index {self.sheet} (0-based); the workbook has "
                    f"{len(names)}: {listed}"
                )
            return names[self.sheet]
        if self.sheet not in names:
            close = difflib.get_close_matches(self.sheet, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.data_error(f"there is no sheet named {self.sheet!r}; sheets: {listed}{hint}")
        return self.sheet

    def _worksheet(self, workbook: Any) -> Any:
        name = self._sheet_name(workbook.sheetnames)
        worksheet = workbook[name]
        if not hasattr(worksheet, "iter_rows"):
            raise self.data_error(f"sheet {name!r} is a chart sheet, not a sheet of cells")
        return worksheet

    # ---- reading --------------------------------------------------------------------------

    def _read_sync(self) -> list[Any]:
        rows: list[Any] = []
        for chunk in self._iter_chunks(1 << 30):
            rows.extend(chunk)
        return rows

    def _iter_chunks(self, chunk_size: int) -> Chunks:
        with self._workbook() as workbook:
            worksheet = self._worksheet(workbook)
            numbered = enumerate(worksheet.iter_rows(values_only=True), start=1)
            header = self._header(numbered, worksheet.title) if self.has_header else None
            if self.has_header and header is None:
                return  # an empty sheet
            convert = self._typer(header, worksheet.title)
            while chunk := self._take(numbered, header, chunk_size, worksheet.title, convert):
                yield chunk

    def _typer(self, header: list[str] | None, title: str) -> Callable[[Row, int], Row] | None:
        """The converter of declared column types for this header (None when nothing is typed)."""
        if header is None or not self.columns:
            return None
        return CellRowTyper(self, header, self.columns, title)

    def _header(self, numbered: Iterator[tuple[int, _Values]], title: str) -> list[str] | None:
        from openpyxl.utils import get_column_letter

        for number, values in numbered:
            cells = list(values)
            while cells and cells[-1] is None:
                cells.pop()
            if not cells:
                continue
            names = [get_column_letter(i) if v is None else str(v) for i, v in enumerate(cells, 1)]
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise self.data_error(
                        f"sheet {title!r} row {number}: the header names column {name!r} twice; "
                        "rename it, or set has_header: false"
                    )
                seen.add(name)
            unknown = unknown_columns_error(self, self.columns or {}, names, number)
            if unknown is not None:
                raise unknown
            return names
        return None

    def _take(
        self,
        numbered: Iterator[tuple[int, _Values]],
        header: list[str] | None,
        count: int,
        title: str,
        convert: Callable[[Row, int], Row] | None = None,
    ) -> list[Any]:
        out: list[Any] = []
        width = len(header) if header is not None else 0
        while len(out) < count:
            wanted = count - len(out)
            got = 0
            for number, values in islice(numbered, wanted):
                got += 1
                if all(value is None for value in values):
                    continue
                if header is None:
                    # Trailing empty cells are dropped: whether a reader sees them depends on the
                    # dimensions the writing application recorded, not on the data.
                    cells = list(values)
                    while cells[-1] is None:
                        cells.pop()
                    out.append(cells)
                    continue
                if len(values) > width and any(value is not None for value in values[width:]):
                    raise self.data_error(
                        f"sheet {title!r} row {number} has values beyond the {width} columns of the header"
                    )
                row: dict[str, Any] = dict.fromkeys(header)
                row.update(zip(header, values[:width], strict=False))
                out.append(row if convert is None else convert(row, number))
            if got < wanted:
                break
        return out

    # ---- writing --------------------------------------------------------------------------

    def _write_sync(self, data: Any) -> None:
        if isinstance(data, str | bytes | Mapping) or not hasattr(data, "__iter__"):
            raise self.data_error(f"cannot write: expected a list of rows, got {type(data).__name__}")
        rows = list(data)
        openpyxl = self._openpyxl()
        with self._workbook() as existing:
            names = list(existing.sheetnames)
        title = (
            self._sheet_name(names) if names else (self.sheet if isinstance(self.sheet, str) else "Sheet1")
        )
        others = [name for name in names if name != title]
        if others:
            raise self.data_error(
                f"cannot write: the workbook has other sheets ({', '.join(map(repr, others))}) that "
                "writing would drop; give this resource a workbook of its own"
            )
        workbook = openpyxl.Workbook(write_only=True)
        try:
            worksheet = workbook.create_sheet(title)
        except ValueError as exc:  # a name Excel does not allow
            raise self.data_error(f"cannot write: {exc}") from None
        for index, line in self._lines(rows):
            try:
                worksheet.append(line)
            except (TypeError, ValueError) as exc:
                raise self.data_error(f"cannot write row {index}: {exc}") from None
        self._atomic_write(workbook.save)

    def _lines(self, rows: list[Any]) -> Iterator[tuple[int | str, list[Any]]]:
        """The sheet's lines, each with the index of the row it came from ("header" for the header)."""
        if self.has_header:
            columns: dict[Any, None] = {}
            for index, row in enumerate(rows):
                if not isinstance(row, Mapping):
                    raise self.data_error(
                        f"cannot write row {index}: expected a mapping (has_header is true), "
                        f"got {type(row).__name__}"
                    )
                columns.update(dict.fromkeys(row))
            if not rows:
                return
            yield "header", [str(name) for name in columns]
            for index, row in enumerate(rows):
                yield index, [row.get(name) for name in columns]
        else:
            for index, row in enumerate(rows):
                if isinstance(row, str | bytes | Mapping) or not isinstance(row, Sequence):
                    raise self.data_error(
                        f"cannot write row {index}: expected a list of values (has_header is false), "
                        f"got {type(row).__name__}"
                    )
                yield index, list(row)
