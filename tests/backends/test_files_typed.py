"""Declared column types (``columns``) of csv and excel resources, on real files in tmp_path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from xresource.backends.files.csv import CsvResource
from xresource.backends.files.excel import ExcelResource
from xresource.errors import XResourceDataError
from xresource.manifests import load_manifests

openpyxl = pytest.importorskip("openpyxl")

EVERY_TYPE = {
    "id": "int",
    "price": "decimal",
    "weight": "float",
    "day": "date",
    "at": "datetime",
    "ok": "bool",
    "name": "str",
}
CSV_TEXT = (
    "id,price,weight,day,at,ok,name,note\n"
    "1,12.50,0.5,2024-01-02,2024-01-02T12:00:00Z,true,ada,first\n"
    "\n"
    '2,,,2024-02-29,2024-03-01 08:30:00+02:00,No,,"two\nlines"\n'
    "3,-7,1e3,,,,grace,\n"
)
EXPECTED = [
    {
        "id": 1,
        "price": Decimal("12.50"),
        "weight": 0.5,
        "day": dt.date(2024, 1, 2),
        "at": dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC),
        "ok": True,
        "name": "ada",
        "note": "first",
    },
    {
        "id": 2,
        "price": None,
        "weight": None,
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2024, 3, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "ok": False,
        "name": "",  # a str column keeps the empty string, as an untyped one does
        "note": "two\nlines",
    },
    {
        "id": 3,
        "price": Decimal("-7"),
        "weight": 1000.0,
        "day": None,
        "at": None,
        "ok": None,
        "name": "grace",
        "note": "",
    },
]


def typed_csv(tmp_path: Path, text: str = CSV_TEXT, columns: dict[str, str] | None = None) -> CsvResource:
    path = tmp_path / "typed.csv"
    path.write_text(text, encoding="utf-8")
    return CsvResource(name="typed", file_path=path, columns=EVERY_TYPE if columns is None else columns)


async def first_error(resource: CsvResource | ExcelResource, chunk_size: int | None) -> XResourceDataError:
    """The error of ``read()`` (no chunk_size) or of ``read_stream(chunk_size)``."""
    return (await until_error(resource, chunk_size))[1]


async def until_error(
    resource: CsvResource | ExcelResource, chunk_size: int | None
) -> tuple[list[Any], XResourceDataError]:
    """The rows read before the error, and the error."""
    seen: list[Any] = []
    try:
        if chunk_size is None:
            await resource.read()
        else:
            async for chunk in resource.read_stream(chunk_size):
                seen.extend(chunk)
    except XResourceDataError as exc:
        return seen, exc
    raise AssertionError("read without an error")


# ---- csv: reading ---------------------------------------------------------------------------------


async def test_csv_rows_hold_declared_types(tmp_path: Path) -> None:
    async with typed_csv(tmp_path) as resource:
        rows = await resource.read()
        assert rows == EXPECTED
        assert [type(v) for v in rows[0].values()] == [int, Decimal, float, dt.date, dt.datetime, bool, str, str]
        chunks = [chunk async for chunk in resource.read_stream(2)]
        assert chunks == [EXPECTED[:2], EXPECTED[2:]]


async def test_untyped_columns_stay_text_and_untyped_resource_is_unchanged(tmp_path: Path) -> None:
    async with typed_csv(tmp_path, columns={"id": "int"}) as resource:
        rows = await resource.read()
    assert [row["id"] for row in rows] == [1, 2, 3]
    assert rows[0]["price"] == "12.50"
    plain = CsvResource(name="plain", file_path=tmp_path / "typed.csv")
    assert plain.columns is None
    async with plain:
        assert (await plain.read())[0]["id"] == "1"


async def test_short_row_is_padded_with_none_and_its_values_typed(tmp_path: Path) -> None:
    async with typed_csv(tmp_path, "id,price,ok\n1,2.5\n", {"id": "int", "price": "decimal", "ok": "bool"}) as r:
        assert await r.read() == [{"id": 1, "price": Decimal("2.5"), "ok": None}]


@pytest.mark.parametrize(
    ("type_name", "bad"),
    [
        ("int", "1.5"),
        ("int", "x"),
        ("float", "one"),
        ("decimal", "12,50"),
        ("bool", "maybe"),
        ("bool", "tRUE"),
        ("date", "02/01/2024"),
        ("date", "2024-02-30"),
        ("datetime", "noon"),
    ],
)
@pytest.mark.parametrize("chunk_size", [None, 1, 1000])
async def test_csv_value_that_does_not_parse_names_file_line_column_and_name(
    tmp_path: Path, type_name: str, bad: str, chunk_size: int | None
) -> None:
    text = f'id,note,value\n1,"a\nb",{GOOD[type_name]}\n\n2,x,"{bad}"\n3,y,{GOOD[type_name]}\n'
    async with typed_csv(tmp_path, text, {"id": "int", "value": type_name}) as resource:
        error = await first_error(resource, chunk_size)
    assert (error.path, error.line, error.column) == (str(resource.file_path), 5, 3)
    assert f"typed.csv:5:3: column 'value' ({type_name}): {bad!r} is not" in str(error)
    assert "Traceback" not in str(error)


GOOD = {
    "int": "7",
    "float": "7.5",
    "decimal": "7.50",
    "bool": "yes",
    "date": "2024-01-31",
    "datetime": "2024-01-31T00:00:00",
}


async def test_error_comes_after_the_rows_before_it(tmp_path: Path) -> None:
    good = "".join(f"{i}\n" for i in range(10))
    async with typed_csv(tmp_path, f"n\n{good}oops\n", {"n": "int"}) as resource:
        seen, error = await until_error(resource, 4)
    assert "typed.csv:12:1: column 'n'" in str(error)
    assert seen == [{"n": i} for i in range(8)]  # the last full chunk before the bad row


async def test_declared_column_missing_from_header_names_the_header_line(tmp_path: Path) -> None:
    async with typed_csv(tmp_path, "\nid,price\n1,2\n", {"id": "int", "prise": "decimal"}) as resource:
        error = await first_error(resource, None)
        assert (error.line, error.column) == (2, None)
        assert "columns declares 'prise', which the header does not have; did you mean 'price'?" in str(error)
        assert (await first_error(resource, 10)).line == 2


async def test_empty_file_with_columns_reads_no_rows(tmp_path: Path) -> None:
    async with typed_csv(tmp_path, "", {"id": "int"}) as resource:
        assert await resource.read() == []


async def test_hostile_header_names_stay_data(tmp_path: Path) -> None:
    names = ["}); __import__('os').system('echo pwned') #", "a'b\"c", "\\"]
    header = ",".join('"' + n.replace('"', '""') + '"' for n in names)
    columns = dict.fromkeys(names, "int")
    async with typed_csv(tmp_path, f"{header}\n1,2,3\n", columns) as resource:
        assert await resource.read() == [dict(zip(names, [1, 2, 3], strict=True))]


async def test_other_delimiter_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("prix;jour;nom\n3,5;2024-05-01;Zoë\n".encode("latin-1"))
    resource = CsvResource(
        name="latin",
        file_path=path,
        delimiter=";",
        encoding="latin-1",
        columns={"prix": "str", "jour": "date", "nom": "str"},
    )
    async with resource:
        assert await resource.read() == [{"prix": "3,5", "jour": dt.date(2024, 5, 1), "nom": "Zoë"}]


# ---- csv: writing ---------------------------------------------------------------------------------


async def test_typed_write_reads_back_the_same_values(tmp_path: Path) -> None:
    async with typed_csv(tmp_path) as resource:
        await resource.write(EXPECTED)
        assert await resource.read() == EXPECTED
        text = resource.file_path.read_text()
    assert "2024-01-02T12:00:00+00:00" in text
    assert ",true," in text
    assert ",false," in text


async def test_write_adds_declared_columns_the_rows_lack(tmp_path: Path) -> None:
    async with typed_csv(tmp_path, columns={"id": "int", "ok": "bool"}) as resource:
        await resource.write([{"id": 1}, {"id": "2"}])
        assert resource.file_path.read_text() == "id,ok\n1,\n2,\n"
        assert await resource.read() == [{"id": 1, "ok": None}, {"id": 2, "ok": None}]


@pytest.mark.parametrize(
    ("type_name", "bad"),
    [
        ("int", 1.5),
        ("int", True),  # a bool is not a number to a reader
        ("int", "x"),
        ("float", "x"),
        ("decimal", dt.date(2024, 1, 1)),
        ("bool", 1),
        ("bool", "perhaps"),
        ("date", dt.datetime(2024, 1, 1, 12)),
        ("datetime", dt.date(2024, 1, 1)),
    ],
)
async def test_write_rejects_a_value_of_the_wrong_type_and_keeps_the_file(
    tmp_path: Path, type_name: str, bad: Any
) -> None:
    async with typed_csv(tmp_path, "v\n", {"v": type_name}) as resource:
        with pytest.raises(XResourceDataError, match=rf"cannot write row 1: column 'v' \({type_name}\)"):
            await resource.write([{"v": None}, {"v": bad}])
        assert resource.file_path.read_text() == "v\n"


# ---- manifests --------------------------------------------------------------------------------------


def test_unknown_type_name_is_a_manifest_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id\n1\n")
    manifest = tmp_path / "orders.yaml"
    manifest.write_text(
        "name: orders\ntype: csv\nfile_path: data.csv\ncolumns:\n  id: int\n  qty: integer\n  n: [1]\n"
    )
    problems = {p.field: p for p in load_manifests(tmp_path).problems}
    assert set(problems) == {"columns.qty", "columns.n"}
    qty = problems["columns.qty"]
    assert (qty.file, qty.line, qty.column) == (str(manifest), 6, 8)
    assert "unknown column type 'integer'; did you mean 'int'?" in qty.message
    assert problems["columns.n"].line == 7


def test_columns_need_a_header(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1\n")
    (tmp_path / "a.toml").write_text(
        'name = "a"\ntype = "csv"\nfile_path = "data.csv"\nhas_header = false\ncolumns = { x = "int" }\n'
    )
    [problem] = load_manifests(tmp_path).problems
    assert (problem.line, problem.field) == (5, "columns")
    assert "needs has_header: true" in problem.message
    with pytest.raises(ValidationError, match="needs has_header"):
        ExcelResource(name="x", file_path=tmp_path / "x.xlsx", has_header=False, columns={"a": "int"})


# ---- excel ------------------------------------------------------------------------------------------


def write_sheet(path: Path, rows: list[list[Any]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "data"
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


async def test_excel_cells_convert_to_declared_types(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "book.xlsx",
        [
            ["id", "price", "weight", "day", "at", "ok", "name", "other"],
            [1.0, 12.5, 2, dt.datetime(2024, 1, 2), "2024-01-02T12:00:00", "yes", 42, 3.5],
            ["2", "0.10", "1.5", "2024-02-29", dt.date(2024, 3, 1), 0, "x", None],
            [3, 0.1, None, None, None, True, None, "keep"],
        ],
    )
    resource = ExcelResource(name="book", file_path=path, columns=EVERY_TYPE)
    async with resource:
        rows = await resource.read()
        assert [chunk async for chunk in resource.read_stream(2)] == [rows[:2], rows[2:]]
    assert rows == [
        {
            "id": 1,
            "price": Decimal("12.5"),
            "weight": 2.0,
            "day": dt.date(2024, 1, 2),
            "at": dt.datetime(2024, 1, 2, 12),
            "ok": True,
            "name": "42",
            "other": 3.5,
        },
        {
            "id": 2,
            "price": Decimal("0.10"),
            "weight": 1.5,
            "day": dt.date(2024, 2, 29),
            "at": dt.datetime(2024, 3, 1),
            "ok": False,
            "name": "x",
            "other": None,
        },
        {
            "id": 3,
            "price": Decimal("0.1"),
            "weight": None,
            "day": None,
            "at": None,
            "ok": True,
            "name": None,
            "other": "keep",
        },
    ]
    assert isinstance(rows[0]["id"], int)
    assert isinstance(rows[1]["weight"], float)


@pytest.mark.parametrize(
    ("type_name", "bad"),
    [
        ("int", 1.5),
        ("int", True),
        ("bool", 2),
        ("date", dt.datetime(2024, 1, 2, 9, 30)),  # a time of day would be lost
        ("datetime", "later"),
        ("decimal", "n/a"),
    ],
)
async def test_excel_bad_cell_names_sheet_row_column_and_name(tmp_path: Path, type_name: str, bad: Any) -> None:
    path = write_sheet(tmp_path / "book.xlsx", [[None], ["a", "value"], ["x", None], ["y", bad]])
    resource = ExcelResource(name="book", file_path=path, columns={"value": type_name})
    async with resource:
        error = await first_error(resource, None)
    assert (error.path, error.line, error.column) == (str(path), 4, 2)
    assert f"book.xlsx:4:2: sheet 'data' row 4: column 'value' ({type_name}):" in str(error)


async def test_excel_declared_column_missing_from_header(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "book.xlsx", [[None], ["a", "b"], [1, 2]])
    resource = ExcelResource(name="book", file_path=path, columns={"c": "int"})
    async with resource:
        error = await first_error(resource, 5)
    assert error.line == 2
    assert "columns declares 'c', which the header does not have" in str(error)
