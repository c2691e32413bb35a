"""Declared column types for tabular files (``csv``, ``excel``): ``columns: {price: decimal, qty: int}``.

The types, and what a cell must look like to parse:

- ``str``: the text as it is (the same as not declaring the column);
- ``int``: a whole number (Python's ``int()``: ``42``, ``-7``);
- ``float``: a number (``1.5``, ``2e-3``, ``nan``, ``inf``);
- ``decimal``: an exact decimal (``12.50``), as :class:`decimal.Decimal`;
- ``bool``: ``true``/``false``, ``yes``/``no``, ``t``/``f``, ``y``/``n``, ``1``/``0``, each in lower,
  Title or UPPER case;
- ``date``: ISO 8601 (``2024-05-31``), as :class:`datetime.date`;
- ``datetime``: ISO 8601 (``2024-05-31T12:00:00``, with or without an offset such as ``Z`` or
  ``+02:00``), as :class:`datetime.datetime`.

An empty cell in a column of any type but ``str`` reads as ``None`` (a ``str`` column keeps what
an untyped one gives: ``""`` in a CSV file, ``None`` for an empty Excel cell). A value that does not
parse is an :class:`~xresource.errors.XResourceDataError` naming the file, line, column and
column name.

CSV rows are built by one function generated per header (like the untyped row builder in
``csv.py``): each typed cell is one converter call inline in a dict display, so a declared
type costs the conversion and nothing else. When a row fails, it is converted again cell by
cell to find which value is to blame.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BeforeValidator

if TYPE_CHECKING:
    from xresource.backends.files._base import FileResource
    from xresource.errors import XResourceDataError

Row = dict[str, Any]
ColumnType = Literal["str", "int", "float", "decimal", "bool", "date", "datetime"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)

_TRUE = ("true", "yes", "t", "y", "1")
_FALSE = ("false", "no", "f", "n", "0")


def _spellings(words: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(s for w in words for s in (w, w.title(), w.upper())))


TRUE_TEXTS = _spellings(_TRUE)
FALSE_TEXTS = _spellings(_FALSE)
_BOOLS: dict[str, bool] = {**dict.fromkeys(TRUE_TEXTS, True), **dict.fromkeys(FALSE_TEXTS, False)}

# What each type reads text with; a converter raises ValueError, KeyError or ArithmeticError.
TEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "decimal": Decimal,
    "bool": _BOOLS.__getitem__,
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
}
_FAILURES = (ValueError, KeyError, ArithmeticError, TypeError)
_EXPECTED = {
    "int": "a whole number such as 42",
    "float": "a number such as 1.5",
    "decimal": "a decimal number such as 12.50",
    "bool": "true or false (also yes/no, 1/0)",
    "date": "an ISO date such as 2024-05-31",
    "datetime": "an ISO date and time such as 2024-05-31T12:00:00",
}
_VALUE_LIMIT = 60


def _known_type(value: Any) -> Any:
    if isinstance(value, str) and value not in COLUMN_TYPES:
        close = difflib.get_close_matches(value.lower(), COLUMN_TYPES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown column type {value!r}{hint} (types: {', '.join(COLUMN_TYPES)})")
    return value


# A manifest's ``columns``: header name -> type name. The validator runs per value, so an unknown
# type name is reported at that value's line.
Columns = dict[str, Annotated[ColumnType, BeforeValidator(_known_type)]]


def require_header(columns: Columns | None, has_header: bool) -> Columns | None:
    """``columns`` names header columns, so a file without a header cannot declare them."""
    if columns and not has_header:
        raise ValueError("needs has_header: true (it types the columns the header names)")
    return columns


def unknown_columns_error(
    resource: FileResource, columns: Mapping[str, str], header: Sequence[str], line: int | None
) -> XResourceDataError | None:
    """The error for a declared column the header does not have, if there is one."""
    missing = [name for name in columns if name not in header]
    if not missing:
        return None
    name = missing[0]
    close = difflib.get_close_matches(name, header, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(h) for h in header)
    return resource.data_error(
        f"columns declares {name!r}, which the header does not have{hint} (header: {listed})", line=line
    )


def value_error(
    resource: FileResource,
    name: str,
    type_name: str,
    value: Any,
    *,
    line: int | None,
    column: int | None,
    where: str = "",
) -> XResourceDataError:
    shown = repr(value)
    if len(shown) > _VALUE_LIMIT:
        shown = shown[: _VALUE_LIMIT - 4] + "...'"
    expected = _EXPECTED.get(type_name, type_name)
    return resource.data_error(
        f"{where}column {name!r} ({type_name}): {shown} is not {expected}", line=line, column=column
    )


# ---- CSV: rows of text ------------------------------------------------------------------------


class TextRowTyper:
    """Typed dict rows from the text rows of one CSV header."""

    def __init__(self, resource: FileResource, header: Sequence[str], columns: Mapping[str, str]) -> None:
        self.resource = resource
        self.header = list(header)
        self.types: list[str | None] = [
            None if columns.get(name, "str") == "str" else columns[name] for name in header
        ]
        self.build = typed_row_builder(tuple(header), tuple(self.types))

    def row(self, row: list[str], line: int | None) -> Row:
        """Any row that is not exactly as wide as the header, or one whose fast build failed."""
        if len(row) > len(self.header):
            raise self.resource.data_error(
                f"row has {len(row)} fields but the header has {len(self.header)}", line=line
            )
        out: Row = dict.fromkeys(self.header)
        for index, value in enumerate(row):
            name, type_name = self.header[index], self.types[index]
            if type_name is None:
                out[name] = value
            elif value:
                try:
                    out[name] = TEXT_PARSERS[type_name](value)
                except _FAILURES:
                    raise value_error(
                        self.resource, name, type_name, value, line=line, column=index + 1
                    ) from None
        return out

    def take(self, reader: Iterator[list[str]], count: int) -> list[Row]:
        """Up to ``count`` typed rows from ``reader`` (blank lines skipped); fewer at the end."""
        width = len(self.header)
        build, slow = self.build, self.row
        out: list[Row] = []
        append = out.append
        while len(out) < count:
            wanted = count - len(out)
            before, blank = len(out), 0
            for row in islice(reader, wanted):
                if len(row) == width:
                    try:
                        append(build(row))
                    except _FAILURES:
                        append(slow(row, getattr(reader, "line_num", None)))  # raises, naming the cell
                elif not row:
                    blank += 1
                else:
                    append(slow(row, getattr(reader, "line_num", None)))
            if len(out) - before + blank < wanted:
                break
        return out


@lru_cache(maxsize=64)
def typed_row_builder(header: tuple[str, ...], types: tuple[str | None, ...]) -> Callable[[list[str]], Row]:
    """A function making a typed row dict from a list of exactly ``len(header)`` strings.

    Generated like ``csv._row_builder``: one dict display with constant keys, a typed cell being
    ``parse(row[i]) if row[i] else None``. Keys enter as ``repr`` literals, converters by fixed
    names, and the code runs without builtins, so a header cannot inject anything.
    """
    items = []
    for index, (name, type_name) in enumerate(zip(header, types, strict=True)):
        cell = f"row[{index}]"
        value = cell if type_name is None else f"_{type_name}({cell}) if {cell} else None"
        items.append(f"{name!r}: {value}")
    namespace: dict[str, Any] = {"__builtins__": {}}
    namespace.update({f"_{type_name}": parse for type_name, parse in TEXT_PARSERS.items()})
    builder: Callable[[list[str]], Row] = eval(f"lambda row: {{{', '.join(items)}}}", namespace)  # noqa: S307
    return builder


# ---- CSV: writing typed values ------------------------------------------------------------------


def _format_value(type_name: str, value: Any) -> str | None:
    """The text a typed value is written as, or None when it does not fit the type."""
    if isinstance(value, str):
        if value:
            try:
                TEXT_PARSERS[type_name](value)
            except _FAILURES:
                return None
        return value
    if type_name == "bool":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None  # a bool is an int to Python, but not a number to a reader
    if type_name == "int":
        return str(value) if isinstance(value, int) else None
    if type_name in ("float", "decimal"):
        return (
            repr(value)
            if isinstance(value, float)
            else str(value)
            if isinstance(value, int | Decimal)
            else None
        )
    if type_name == "date":
        return value.isoformat() if isinstance(value, date) and not isinstance(value, datetime) else None
    if type_name == "datetime":
        return value.isoformat() if isinstance(value, datetime) else None
    return None


def format_rows(resource: FileResource, columns: Mapping[str, str], rows: list[Any]) -> list[Any]:
    """Rows with the values of typed columns as the text they read back from.

    ``None`` is written as an empty cell; a value of the wrong type (or text that would not
    parse) is an error naming the row and column, so a write never leaves a file its own read
    rejects.
    """
    typed = [(name, type_name) for name, type_name in columns.items() if type_name != "str"]
    if not typed:
        return rows
    out = []
    for index, row in enumerate(rows):
        changed = dict(row)
        for name, type_name in typed:
            value = changed.get(name)
            if value is None:
                continue
            text = _format_value(type_name, value)
            if text is None:
                raise value_error(
                    resource,
                    name,
                    type_name,
                    value,
                    line=None,
                    column=None,
                    where=f"cannot write row {index}: ",
                )
            changed[name] = text
        out.append(changed)
    return out


# ---- Excel: cells that already have a type ----------------------------------------------------


def _cell_int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value)
    raise TypeError


def _cell_float(value: Any) -> float:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return float(value)
    raise TypeError


def _cell_decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text of the float: 0.1, not 0.1000000000000000055...
    if isinstance(value, int | str) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError


def _cell_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _BOOLS[value]
    raise TypeError


def _cell_date(value: Any) -> date:
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ValueError  # a time of day would be lost
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError


def _cell_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise TypeError


def _cell_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


CELL_PARSERS: dict[str, Callable[[Any], Any]] = {
    "str": _cell_str,
    "int": _cell_int,
    "float": _cell_float,
    "decimal": _cell_decimal,
    "bool": _cell_bool,
    "date": _cell_date,
    "datetime": _cell_datetime,
}


class CellRowTyper:
    """Converts the typed columns of Excel row dicts in place."""

    def __init__(
        self, resource: FileResource, header: Sequence[str], columns: Mapping[str, str], sheet: str
    ) -> None:
        self.resource = resource
        self.sheet = sheet
        self.typed = [
            (index, name, columns[name], CELL_PARSERS[columns[name]])
            for index, name in enumerate(header)
            if name in columns
        ]

    def __call__(self, row: Row, number: int) -> Row:
        for index, name, type_name, parse in self.typed:
            value = row[name]
            if value is None:
                continue
            if value == "" and type_name != "str":
                row[name] = None
                continue
            try:
                row[name] = parse(value)
            except _FAILURES:
                raise value_error(
                    self.resource,
                    name,
                    type_name,
                    value,
                    line=number,
                    column=index + 1,
                    where=f"sheet {self.sheet!r} row {number}: ",
                ) from None
        return row
