"""csv, excel, json and yaml resources on real files in tmp_path."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tests.backends.file_contract import FileContract, collect
from xresource.backends.files._base import FileResource
from xresource.backends.files.csv import CsvResource
from xresource.backends.files.excel import ExcelResource
from xresource.backends.files.json import JsonResource
from xresource.backends.files.yaml import YamlResource
from xresource.errors import (
    MissingDependencyError,
    XResourceConnectionError,
    XResourceDataError,
    XResourceError,
)
from xresource.factory import ResourceFactory

ROOT = Path(__file__).resolve().parents[2]

openpyxl = pytest.importorskip("openpyxl")


# ---- helpers ------------------------------------------------------------------------------


async def collect_until_error(
    resource: FileResource, chunk_size: int
) -> tuple[list[list[Any]], XResourceDataError]:
    """The chunks a stream yielded before it failed, and the error it failed with."""
    chunks: list[list[Any]] = []
    try:
        async for chunk in resource.read_stream(chunk_size):
            chunks.append(chunk)
    except XResourceDataError as exc:
        return chunks, exc
    raise AssertionError("the stream ended without an error")


def write_csv(path: Path, rows: list[list[Any]], **dialect: Any) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, **dialect).writerows(rows)
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


PEOPLE = [["id", "name", "city"], *[[str(i), f"name {i}", f"city {i % 3}"] for i in range(10)]]


# Each file type with a small valid sample of ten records and its expected read() result.
def sample(type_name: str, folder: Path) -> tuple[FileResource, Any]:
    records = [{"id": i, "name": f"name {i}"} for i in range(10)]
    if type_name == "csv":
        path = write_csv(folder / "people.csv", [["id", "name"], *[[r["id"], r["name"]] for r in records]])
        return CsvResource(name="people", file_path=path), [
            {"id": str(r["id"]), "name": r["name"]} for r in records
        ]
    if type_name == "excel":
        path = write_xlsx(
            folder / "people.xlsx", {"people": [["id", "name"], *[list(r.values()) for r in records]]}
        )
        return ExcelResource(name="people", file_path=path), records
    if type_name == "json":
        path = folder / "people.json"
        path.write_text(json.dumps(records))
        return JsonResource(name="people", file_path=path), records
    path = folder / "people.yaml"
    path.write_text(yaml.safe_dump(records))
    return YamlResource(name="people", file_path=path), records


TYPES = ["csv", "excel", "json", "yaml"]


def big_sample(type_name: str, folder: Path) -> FileResource:
    """A file that takes far longer to read than one worker-thread hop reads ahead."""
    if type_name == "csv":
        path = write_csv(folder / "big.csv", [["a", "b"], *[[i, i] for i in range(50_000)]])
        return CsvResource(name="big", file_path=path)
    if type_name == "excel":
        path = write_xlsx(folder / "big.xlsx", {"s": [["a", "b"], *[[i, i] for i in range(3_000)]]})
        return ExcelResource(name="big", file_path=path)
    if type_name == "json":
        path = folder / "big.json"
        path.write_text(json.dumps([{"a": i} for i in range(50_000)]))
        return JsonResource(name="big", file_path=path)
    path = folder / "big.yaml"
    path.write_text("".join(f"- {{a: {i}}}\n" for i in range(5_000)))
    return YamlResource(name="big", file_path=path)


# ---- the contract, per backend ------------------------------------------------------------

UNWRITABLE_ROW = [{"id": 1, "name": "ok"}, {"id": 2, "name": object()}]


class TestCsvContract(FileContract):
    type_name = "csv"

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        return sample("csv", folder)

    def big_sample(self, folder: Path) -> FileResource:
        return big_sample("csv", folder)

    def malformed(self, folder: Path) -> FileResource:
        path = folder / "long.csv"
        path.write_text("a,b\n1,2\n3,4,5\n")  # a row longer than the header
        return CsvResource(name="long", file_path=path)

    def unwritable(self) -> list[Any]:
        return [{"id": 1}, ["not", "a", "mapping"]]


class TestExcelContract(FileContract):
    type_name = "excel"

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        return sample("excel", folder)

    def big_sample(self, folder: Path) -> FileResource:
        return big_sample("excel", folder)

    def memory_sample(self, folder: Path) -> FileResource:
        path = write_xlsx(folder / "huge.xlsx", {"s": [["a", "b"], *[[i, i] for i in range(10_000)]]})
        return ExcelResource(name="huge", file_path=path)

    def malformed(self, folder: Path) -> FileResource:
        path = folder / "fake.xlsx"
        path.write_bytes(b"PK\x03\x04 truncated")
        return ExcelResource(name="fake", file_path=path)

    def unwritable(self) -> list[Any]:
        return UNWRITABLE_ROW


class TestJsonContract(FileContract):
    type_name = "json"

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        return sample("json", folder)

    def big_sample(self, folder: Path) -> FileResource:
        return big_sample("json", folder)

    def malformed(self, folder: Path) -> FileResource:
        path = folder / "bad.json"
        path.write_text('{\n  "a": 1,\n  "b": ,\n}\n')
        return JsonResource(name="bad", file_path=path)

    def unwritable(self) -> list[Any]:
        return UNWRITABLE_ROW


class TestJsonLinesContract(FileContract):
    type_name = "json"

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        records = [{"id": i, "name": f"name {i}"} for i in range(10)]
        path = folder / "people.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return JsonResource(name="people", file_path=path, lines=True), records

    def big_sample(self, folder: Path) -> FileResource:
        path = folder / "big.jsonl"
        path.write_text("".join(json.dumps({"a": i}) + "\n" for i in range(50_000)))
        return JsonResource(name="big", file_path=path, lines=True)

    def malformed(self, folder: Path) -> FileResource:
        path = folder / "bad.jsonl"
        path.write_text('{"a": 1}\n{"b": ,}\n')
        return JsonResource(name="bad", file_path=path, lines=True)

    def unwritable(self) -> list[Any]:
        return UNWRITABLE_ROW


class TestYamlContract(FileContract):
    type_name = "yaml"

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        return sample("yaml", folder)

    def big_sample(self, folder: Path) -> FileResource:
        return big_sample("yaml", folder)

    def malformed(self, folder: Path) -> FileResource:
        path = folder / "bad.yaml"
        path.write_text("- a: 1\n- b: [2\n")
        return YamlResource(name="bad", file_path=path)

    def unwritable(self) -> list[Any]:
        return UNWRITABLE_ROW


# ---- shared behaviour beyond the contract -------------------------------------------------


async def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(XResourceConnectionError, match="is not a file"):
        await CsvResource(name="d", file_path=tmp_path).connect()


async def test_write_through_a_symlink_replaces_the_target(tmp_path: Path) -> None:
    real = write_csv(tmp_path / "real.csv", [["a"], ["1"]])
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    async with CsvResource(name="l", file_path=link) as resource:
        await resource.write([{"a": "2"}])
    assert link.is_symlink()
    assert real.read_text() == "a\n2\n"


async def test_reading_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While a large read is under way, other coroutines still run (the read is off the loop).

    A read done on the loop thread would run to completion as soon as its task starts, so
    the first time this coroutine runs again the read would already be done.
    """
    path = write_csv(tmp_path / "big.csv", [["a", "b", "c"], *[[i, i * 2, "x" * 20] for i in range(150_000)]])
    async with CsvResource(name="big", file_path=path) as resource:
        reading = asyncio.create_task(resource.read())
        for _ in range(3):
            await asyncio.sleep(0)  # let the read start and reach its first await
        assert not reading.done(), "read() ran to completion without yielding to the loop"
        rows = await reading
    assert len(rows) == 150_000


async def test_concurrent_streams_are_independent(tmp_path: Path) -> None:
    resource, expected = sample("csv", tmp_path)
    async with resource:
        first, second = await asyncio.gather(collect(resource, 3), collect(resource, 4))
    assert [r for c in first for r in c] == expected == [r for c in second for r in c]


async def test_factory_builds_file_types(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["a"], ["1"]])
    resource = ResourceFactory.create("csv", name="t", file_path=str(path), delimiter=",")
    assert isinstance(resource, CsvResource)
    async with resource:
        assert await resource.read() == [{"a": "1"}]


@pytest.mark.parametrize("type_name", TYPES)
def test_unknown_fields_are_errors(type_name: str) -> None:
    cls = ResourceFactory.get_class(type_name)
    with pytest.raises(ValidationError, match="extra"):
        cls.model_validate({"name": "x", "file_path": "a", "file_pathh": "b"})


def test_excel_has_no_encoding_field() -> None:
    with pytest.raises(ValidationError):
        ExcelResource.model_validate({"name": "x", "file_path": "a.xlsx", "encoding": "utf-8"})


@pytest.mark.parametrize("cls", [CsvResource, JsonResource, YamlResource])
def test_unknown_encoding_is_a_validation_error(cls: type[FileResource]) -> None:
    with pytest.raises(ValidationError, match="unknown text encoding"):
        cls.model_validate({"name": "x", "file_path": "a", "encoding": "utf-9"})


# ---- csv ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("chunk_size", "sizes"), [(1, [1] * 10), (3, [3, 3, 3, 1]), (10, [10]), (11, [10])])
async def test_csv_chunk_sizes(tmp_path: Path, chunk_size: int, sizes: list[int]) -> None:
    path = write_csv(tmp_path / "p.csv", PEOPLE)
    async with CsvResource(name="p", file_path=path) as resource:
        chunks = await collect(resource, chunk_size)
    assert [len(c) for c in chunks] == sizes
    assert chunks[0][0] == {"id": "0", "name": "name 0", "city": "city 0"}


@pytest.mark.parametrize("content", ["", "a,b\n", "a,b\r\n\r\n\n", "\n\n"])
async def test_csv_empty_and_header_only(tmp_path: Path, content: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(content)
    async with CsvResource(name="e", file_path=path) as resource:
        assert await resource.read() == []
        assert await collect(resource, 5) == []


async def test_csv_blank_lines_are_skipped_and_chunks_stay_full(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("n\n1\n\n\n2\n\n3\n4\n\n")
    async with CsvResource(name="b", file_path=path) as resource:
        assert await collect(resource, 2) == [[{"n": "1"}, {"n": "2"}], [{"n": "3"}, {"n": "4"}]]


async def test_csv_delimiter_quotechar_and_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id;note\n1;'a;b'\n2;'two\nlines'\n3;'it''s'\n")
    async with CsvResource(name="d", file_path=path, delimiter=";", quotechar="'") as resource:
        rows = await resource.read()
        assert rows == [
            {"id": "1", "note": "a;b"},
            {"id": "2", "note": "two\nlines"},
            {"id": "3", "note": "it's"},
        ]
        await resource.write(rows)
        assert await resource.read() == rows
    assert "'a;b'" in path.read_text()


async def test_csv_tab_separated(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\t2,3\n")
    async with CsvResource(name="t", file_path=path, delimiter="\t") as resource:
        assert await resource.read() == [{"a": "1", "b": "2,3"}]


async def test_csv_without_header_gives_lists(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", PEOPLE)
    async with CsvResource(name="n", file_path=path, has_header=False) as resource:
        rows = await resource.read()
        chunks = await collect(resource, 4)
        assert rows[0] == ["id", "name", "city"]
        assert len(rows) == 11
        assert [len(c) for c in chunks] == [4, 4, 3]
        await resource.write([["x", 1], ["y", None]])
        assert await resource.read() == [["x", "1"], ["y", ""]]


async def test_csv_round_trip_with_header_unions_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", [["a"]])
    async with CsvResource(name="r", file_path=path) as resource:
        await resource.write([{"a": 1, "b": "x, y"}, {"c": "é", "a": None}])
        assert await resource.read() == [{"a": "1", "b": "x, y", "c": ""}, {"a": "", "b": "", "c": "é"}]
        await resource.write([])
        assert path.read_text() == ""
        assert await resource.read() == []


async def test_csv_short_rows_are_padded_and_long_rows_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("a,b,c\n1,2,3\n4\n5,6,7,8\n")
    async with CsvResource(name="s", file_path=path) as resource:
        chunks = await anext(aiter(resource.read_stream(2)))
        assert chunks == [{"a": "1", "b": "2", "c": "3"}, {"a": "4", "b": None, "c": None}]
        with pytest.raises(XResourceDataError) as info:
            await resource.read()
    error = info.value
    assert error.line == 4
    assert error.path == str(path)
    assert f"{path}:4: row has 4 fields but the header has 3" in str(error)
    assert "csv resource 's'" in str(error)


async def test_csv_long_row_line_counts_quoted_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('a,b\n"x\ny",1\n1,2,3\n"p\r\nq",2\n\n4,5\n')
    async with CsvResource(name="q", file_path=path) as resource:
        with pytest.raises(XResourceDataError) as info:
            await resource.read()
    assert info.value.line == 4


async def test_csv_duplicate_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("\nid,name,id\n1,2,3\n")
    async with CsvResource(name="dup", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match=r"dup\.csv:2: the header names column 'id' twice"):
            await resource.read()


async def test_csv_parser_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("a\n1\n" + "x" * (csv.field_size_limit() + 10) + "\n")
    async with CsvResource(name="huge", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match=r"huge\.csv:3: field larger than field limit"):
            await collect(resource, 10)


async def test_csv_encodings(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfname\nZo\xc3\xab\n")
    async with CsvResource(name="bom", file_path=bom) as resource:
        assert await resource.read() == [{"name": "Zoë"}]  # no "\ufeffname" key

    latin = tmp_path / "latin.csv"
    latin.write_bytes("name\nZoë\n".encode("latin-1"))
    async with CsvResource(name="latin", file_path=latin, encoding="latin-1") as resource:
        assert await resource.read() == [{"name": "Zoë"}]
        await resource.write([{"name": "Façade"}])
    assert latin.read_bytes() == "name\nFaçade\n".encode("latin-1")

    async with CsvResource(name="latin", file_path=latin) as resource:  # read as utf-8
        with pytest.raises(XResourceDataError, match="codec can't decode"):
            await resource.read()
        with pytest.raises(XResourceDataError, match="codec can't decode"):
            await collect(resource, 1)

    async with CsvResource(name="ascii", file_path=latin, encoding="ascii") as resource:
        with pytest.raises(XResourceDataError, match="codec can't encode"):
            await resource.write([{"name": "Zoë"}])
    assert latin.read_bytes() == "name\nFaçade\n".encode("latin-1")


@pytest.mark.parametrize(
    "fields",
    [
        {"delimiter": ";;"},
        {"delimiter": ""},
        {"delimiter": "\n"},
        {"quotechar": "\r"},
        {"delimiter": '"'},
        {"delimiter": "'", "quotechar": "'"},
        {"has_header": "maybe"},
    ],
)
def test_csv_bad_dialect_is_a_validation_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CsvResource.model_validate({"name": "x", "file_path": "a.csv", **fields})


@pytest.mark.parametrize(
    ("has_header", "data", "message"),
    [
        (True, [["a", "b"]], "row 0: expected a mapping"),
        (True, [{"a": 1}, "oops"], "row 1: expected a mapping"),
        (True, {"a": 1}, "expected a list of rows, got dict"),
        (True, "a,b", "expected a list of rows, got str"),
        (True, 5, "expected a list of rows, got int"),
        (True, [{1: "x"}], "column names must be strings"),
        (False, [{"a": 1}], "row 0: expected a list of values"),
        (False, ["abc"], "row 0: expected a list of values"),
    ],
)
async def test_csv_write_rejects_wrong_shapes(
    tmp_path: Path, has_header: bool, data: Any, message: str
) -> None:
    path = write_csv(tmp_path / "w.csv", [["a"], ["1"]])
    async with CsvResource(name="w", file_path=path, has_header=has_header) as resource:
        with pytest.raises(XResourceDataError, match=message):
            await resource.write(data)
    assert path.read_text() == "a\n1\n"


async def test_csv_csv_metadata_names_dialect(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [["a"]])
    info = CsvResource(name="m", file_path=path, delimiter="|").get_metadata()
    assert info["delimiter"] == "|"
    assert info["has_header"] is True


# ---- excel --------------------------------------------------------------------------------


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    return write_xlsx(
        tmp_path / "book.xlsx",
        {
            "orders": [["id", "total", "when"], [1, 9.5, dt.datetime(2024, 1, 2)], [2, 3, None]],
            "returns": [["id"], [7], [8]],
        },
    )


async def test_excel_sheet_by_name_index_and_default(workbook: Path) -> None:
    first = [{"id": 1, "total": 9.5, "when": dt.datetime(2024, 1, 2)}, {"id": 2, "total": 3, "when": None}]
    for sheet in (None, 0, "orders"):
        async with ExcelResource(name="b", file_path=workbook, sheet=sheet) as resource:
            assert await resource.read() == first
    for sheet in (1, "returns"):
        async with ExcelResource(name="b", file_path=workbook, sheet=sheet) as resource:
            assert await resource.read() == [{"id": 7}, {"id": 8}]
            assert await resource.list_collections_or_tables() == ["orders", "returns"]


@pytest.mark.parametrize(
    ("sheet", "message"),
    [
        ("Orders ", r"no sheet named 'Orders '; sheets: 'orders', 'returns'; did you mean 'orders'\?"),
        ("nothing", r"no sheet named 'nothing'; sheets: 'orders', 'returns'$"),
        (2, r"no sheet at index 2 \(0-based\); the workbook has 2: 'orders', 'returns'"),
    ],
)
async def test_excel_missing_sheet_fails_connect(workbook: Path, sheet: Any, message: str) -> None:
    resource = ExcelResource(name="b", file_path=workbook, sheet=sheet)
    with pytest.raises(XResourceDataError, match=message) as info:
        await resource.connect()
    assert "excel resource 'b'" in str(info.value)
    assert str(workbook) in str(info.value)


@pytest.mark.parametrize("sheet", [-1, True, 1.5, ["orders"]])
def test_excel_bad_sheet_is_a_validation_error(sheet: Any) -> None:
    with pytest.raises(ValidationError):
        ExcelResource.model_validate({"name": "b", "file_path": "b.xlsx", "sheet": sheet})


async def test_excel_stream_chunks_and_no_header(tmp_path: Path) -> None:
    rows = [["n", "sq"], *[[i, i * i] for i in range(7)]]
    path = write_xlsx(tmp_path / "sq.xlsx", {"s": rows})
    async with ExcelResource(name="sq", file_path=path) as resource:
        chunks = await collect(resource, 3)
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert chunks[2] == [{"n": 6, "sq": 36}]
    async with ExcelResource(name="sq", file_path=path, has_header=False) as resource:
        assert await resource.read() == rows
        assert [len(c) for c in await collect(resource, 5)] == [5, 3]


async def test_excel_blank_header_cells_empty_rows_and_stray_values(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "x.xlsx", {"s": [[None], ["a", None, "c"], [1, 2, 3], [None, None], [4]]})
    async with ExcelResource(name="x", file_path=path) as resource:
        assert await resource.read() == [{"a": 1, "B": 2, "c": 3}, {"a": 4, "B": None, "c": None}]
    path = write_xlsx(tmp_path / "y.xlsx", {"s": [["a", "b"], [1, 2], [3, 4, 5]]})
    async with ExcelResource(name="y", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match="sheet 's' row 3 has values beyond the 2 columns"):
            await resource.read()
    path = write_xlsx(tmp_path / "z.xlsx", {"s": [["a", "a"], [1, 2]]})
    async with ExcelResource(name="z", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match="sheet 's' row 1: the header names column 'a' twice"):
            await resource.read()
    path = write_xlsx(tmp_path / "empty.xlsx", {"s": []})
    async with ExcelResource(name="e", file_path=path) as resource:
        assert await resource.read() == []
        assert await collect(resource, 2) == []


@pytest.mark.parametrize("content", [b"id,name\n1,x\n", b"PK\x03\x04 truncated", b""])
async def test_excel_not_a_workbook_fails_connect(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_bytes(content)
    with pytest.raises(XResourceDataError, match=r"fake\.xlsx: not a valid Excel workbook"):
        await ExcelResource(name="fake", file_path=path).connect()


async def test_excel_round_trip_and_write_rules(tmp_path: Path, workbook: Path) -> None:
    path = write_xlsx(tmp_path / "one.xlsx", {"data": [["x"]]})
    async with ExcelResource(name="one", file_path=path, sheet="data") as resource:
        rows = [{"id": 1, "price": 2.5, "on": dt.datetime(2024, 5, 1, 12, 30)}, {"id": 2, "note": "é"}]
        await resource.write(rows)
        assert await resource.read() == [
            {"id": 1, "price": 2.5, "on": dt.datetime(2024, 5, 1, 12, 30), "note": None},
            {"id": 2, "price": None, "on": None, "note": "é"},
        ]
        assert await resource.list_collections_or_tables() == ["data"]
        with pytest.raises(XResourceDataError, match="cannot write row 0: expected a mapping"):
            await resource.write([[1, 2]])
    async with ExcelResource(name="one", file_path=path, has_header=False) as resource:
        await resource.write([[1, "a"], [2, None, True]])
        assert await resource.read() == [[1, "a"], [2, None, True]]
    # A workbook with other sheets is never shrunk to one.
    async with ExcelResource(name="b", file_path=workbook, sheet="returns") as resource:
        with pytest.raises(XResourceDataError, match=r"other sheets \('orders'\) that writing would drop"):
            await resource.write([{"id": 1}])
    assert openpyxl.load_workbook(workbook).sheetnames == ["orders", "returns"]


async def test_excel_missing_openpyxl_names_the_extra(
    tmp_path: Path, workbook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # what an install without the extra looks like
    with pytest.raises(MissingDependencyError, match=r"pip install 'xresource\[excel\]'"):
        await ExcelResource(name="b", file_path=workbook).connect()


# ---- json ---------------------------------------------------------------------------------


ITEM_SCHEMA = {
    "type": "array",
    "items": {"$ref": "#/$defs/item"},
    "$defs": {
        "item": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer"}, "price": {"type": "number", "minimum": 0}},
        }
    },
}


async def test_json_round_trip_and_non_array_documents(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("{}")
    async with JsonResource(name="d", file_path=path) as resource:
        document = {"name": "Zoë", "values": [1, 2.5, None, True], "nested": {"a": []}}
        await resource.write(document)
        assert await resource.read() == document
        assert await collect(resource, 10) == [[document]]  # a non-array is yielded once
        await resource.write([])
        assert await resource.read() == []
        assert await collect(resource, 10) == []
        await resource.write("just a string")
        assert await collect(resource, 10) == [["just a string"]]
    assert json.loads(path.read_text()) == "just a string"


async def test_json_stream_keeps_numbers_like_json_load(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    data = [{"f": 0.1, "e": 1e-5, "s": "x\u00e9\n", "u": None}, *[{"i": i} for i in range(5)]]
    # An integer beyond 64 bits stops yajl's C parser; the stream goes on with ijson's Python one.
    data += [{"big": 10**20, "neg": -(2**63) - 1}, *[{"j": i} for i in range(4)]]
    path.write_text(json.dumps(data))
    async with JsonResource(name="n", file_path=path) as resource:
        chunks = await collect(resource, 3)
        assert [row for chunk in chunks for row in chunk] == data == await resource.read()
        assert [len(c) for c in chunks] == [3, 3, 3, 2]
        assert type(chunks[0][0]["f"]) is float


async def test_json_array_is_streamed_incrementally(tmp_path: Path) -> None:
    # The head is a valid array of 20,000 items; the tail is broken. json.load fails on the
    # whole file, but a streaming reader yields the head's chunks before it reaches the tail.
    path = tmp_path / "tail.json"
    items = ",".join(json.dumps({"id": i, "pad": "x" * 20}) for i in range(20_000))
    path.write_text(f'[{items}, {{"id": oops')
    async with JsonResource(name="tail", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match="invalid JSON"):
            await resource.read()
        chunks, error = await collect_until_error(resource, 1000)
    seen = [item["id"] for chunk in chunks for item in chunk]
    assert "tail.json: invalid JSON after item 20000: " in str(error)
    assert seen == list(range(20_000))  # every item of the valid head arrived before the error


async def test_json_malformed_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": ,\n}\n')
    async with JsonResource(name="bad", file_path=path) as resource:
        with pytest.raises(XResourceDataError) as info:
            await resource.read()
        assert (info.value.line, info.value.column) == (3, 8)
        assert f"{path}:3:8: invalid JSON: Expecting value" in str(info.value)
        with pytest.raises(XResourceDataError):
            await collect(resource, 2)


@pytest.mark.parametrize("content", ["", "  \n", "[1, 2", "[1] [2]", "[1,]"])
async def test_json_empty_or_truncated(tmp_path: Path, content: str) -> None:
    path = tmp_path / "e.json"
    path.write_text(content)
    async with JsonResource(name="e", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match="invalid JSON"):
            await resource.read()
        with pytest.raises(XResourceDataError, match="invalid JSON"):
            await collect(resource, 2)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "latin-1"])
async def test_json_encodings_read_and_stream(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "enc.json"
    data = [{"name": "Zoë"}, {"name": "Façade"}]
    path.write_bytes(json.dumps(data, ensure_ascii=False).encode(encoding))
    read_as = "utf-8" if encoding == "utf-8-sig" else encoding  # utf-8 also reads a BOM
    async with JsonResource(name="enc", file_path=path, encoding=read_as) as resource:
        assert await resource.read() == data
        assert await collect(resource, 1) == [[data[0]], [data[1]]]


async def test_json_schema_validates_read_and_names_the_item(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"id": 0}, {"id": 1, "price": 2}, {"id": 2}, {"id": 3, "price": -1}]))
    async with JsonResource(name="items", file_path=path, json_schema=ITEM_SCHEMA) as resource:
        with pytest.raises(
            XResourceDataError, match=r"data does not match json_schema at \$\[3\]\.price: -1 is less"
        ):
            await resource.read()
        seen, error = await collect_until_error(resource, 2)
        assert "item 3 does not match json_schema at $[3].price" in str(error)
        assert seen == [[{"id": 0}, {"id": 1, "price": 2}]]
        assert resource.get_metadata()["validated"] is True


async def test_json_schema_checks_the_top_level_shape_when_streaming(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text("[1, 2]")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    async with JsonResource(name="arr", file_path=path, json_schema=schema) as resource:
        with pytest.raises(XResourceDataError, match=r"the top-level array does not match json_schema at \$"):
            await collect(resource, 1)
    path.write_text('{"a": 5}')
    async with JsonResource(name="arr", file_path=path, json_schema=schema) as resource:
        with pytest.raises(XResourceDataError, match=r"at \$\.a: 5 is not of type 'string'"):
            await collect(resource, 1)


async def test_json_schema_file_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "items.schema.json").write_text(json.dumps(ITEM_SCHEMA))
    (tmp_path / "data.json").write_text('[{"id": 1}, {"id": "two"}]')
    manifests = tmp_path / "resources.d"
    manifests.mkdir()
    resource = JsonResource.model_validate(
        {"name": "d", "file_path": "../data.json", "json_schema": "../schemas/items.schema.json"},
        context={"base_dir": manifests},
    )
    assert resource.json_schema == manifests / "../schemas/items.schema.json"
    async with resource:
        with pytest.raises(XResourceDataError, match=r"item 1 does not match json_schema at \$\[1\]\.id"):
            await collect(resource, 10)


async def test_json_schema_problems_fail_connect(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text("[]")
    missing = JsonResource(name="d", file_path=path, json_schema=tmp_path / "none.json")
    with pytest.raises(XResourceConnectionError, match=r"json_schema file .*none\.json' does not exist"):
        await missing.connect()
    (tmp_path / "broken.json").write_text('{"type": ')
    broken = JsonResource(name="d", file_path=path, json_schema=tmp_path / "broken.json")
    with pytest.raises(XResourceDataError, match=r"broken\.json:1:10: json_schema file is not valid JSON"):
        await broken.connect()
    invalid = JsonResource(name="d", file_path=path, json_schema={"type": "array", "minItems": "two"})
    with pytest.raises(XResourceDataError, match=r"json_schema is not a valid JSON Schema at \$\.minItems"):
        await invalid.connect()


async def test_json_write_validates_and_rejects_what_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text('[{"id": 1}]')
    async with JsonResource(name="w", file_path=path, json_schema=ITEM_SCHEMA) as resource:
        with pytest.raises(
            XResourceDataError, match=r"cannot write: data does not match json_schema at \$\[0\]\.id"
        ):
            await resource.write([{"id": "x"}])
        for bad in ([{"id": 1, "price": float("nan")}], [{"id": 1, "when": dt.date(2024, 1, 1)}], {1, 2}):
            with pytest.raises(XResourceDataError, match="cannot write"):
                await resource.write(bad)
        await resource.write([{"id": 2, "price": 1.5}])
    assert json.loads(path.read_text()) == [{"id": 2, "price": 1.5}]


async def test_json_schema_needs_jsonschema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.json"
    path.write_text("[]")
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'xresource\[jsonschema\]'"):
        await JsonResource(name="d", file_path=path, json_schema={"type": "array"}).connect()
    async with JsonResource(name="d", file_path=path) as plain:  # no schema: no jsonschema needed
        assert await plain.read() == []


# ---- yaml ---------------------------------------------------------------------------------


async def test_yaml_round_trip_and_non_sequence(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("{}\n")
    async with YamlResource(name="d", file_path=path) as resource:
        document = {"name": "Zoë", "when": dt.date(2024, 1, 2), "list": [1, 2.5, None, True], "n": {}}
        await resource.write(document)
        assert await resource.read() == document
        assert await collect(resource, 3) == [[document]]
    assert "Zoë" in path.read_text(encoding="utf-8")  # written as text, not escaped
    assert list(yaml.safe_load(path.read_text())) == ["name", "when", "list", "n"]  # key order kept


async def test_yaml_stream_chunks_with_anchors_across_items(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("- &base {kind: a, size: 1}\n- *base\n- {<<: *base, size: 2}\n- [x, y]\n- 5\n")
    async with YamlResource(name="s", file_path=path) as resource:
        expected = [
            {"kind": "a", "size": 1},
            {"kind": "a", "size": 1},
            {"kind": "a", "size": 2},
            ["x", "y"],
            5,
        ]
        assert await resource.read() == expected
        chunks = await collect(resource, 2)
    assert chunks == [expected[:2], expected[2:4], expected[4:]]


@pytest.mark.parametrize("libyaml", [True, False])
async def test_yaml_stream_with_and_without_libyaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libyaml: bool
) -> None:
    if not libyaml:
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump([{"i": i} for i in range(7)]))
    async with YamlResource(name="p", file_path=path) as resource:
        assert [len(c) for c in await collect(resource, 3)] == [3, 3, 1]


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
async def test_yaml_empty_file_is_no_document(tmp_path: Path, content: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(content)
    async with YamlResource(name="e", file_path=path) as resource:
        assert await resource.read() is None
        assert await collect(resource, 2) == []
    async with YamlResource(name="e", file_path=path, multi_document=True) as resource:
        assert await resource.read() == []
        assert await collect(resource, 2) == []


async def test_yaml_multi_document(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n---\n- 2\n---\nb: 3\n")
    async with YamlResource(name="m", file_path=path) as resource:
        for attempt in (resource.read(), collect(resource, 5)):
            with pytest.raises(
                XResourceDataError,
                match=r"m\.yaml:2:1: the file holds several YAML documents; set multi_document: true",
            ):
                await attempt
    async with YamlResource(name="m", file_path=path, multi_document=True) as resource:
        assert await resource.read() == [{"a": 1}, [2], {"b": 3}]
        assert await collect(resource, 2) == [[{"a": 1}, [2]], [{"b": 3}]]
        await resource.write([{"x": 1}, {"y": 2}])
        assert await resource.read() == [{"x": 1}, {"y": 2}]
        with pytest.raises(XResourceDataError, match="must be a list of documents, got dict"):
            await resource.write({"x": 1})
    assert path.read_text().count("---") == 1


async def test_yaml_unsafe_tags_and_malformed_files_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text("- ok\n- !!python/object/apply:os.system [echo hi]\n")
    async with YamlResource(name="u", file_path=path) as resource:
        for attempt in (resource.read(), collect(resource, 1)):
            with pytest.raises(
                XResourceDataError, match=r"u\.yaml:2:3: invalid YAML: could not determine a constructor"
            ):
                await attempt
        path.write_text("items:\n  - a\n  - [b\n")
        with pytest.raises(XResourceDataError) as info:
            await resource.read()
        assert info.value.line == 4
        path.write_text("- a\n- b\n- [c\n")
        seen, error = await collect_until_error(resource, 1)
        assert f"{path}:4:1: invalid YAML" in str(error)
        assert seen == [["a"], ["b"]]  # streamed before the parser reached the broken item


async def test_yaml_write_rejects_what_yaml_safe_dump_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("a: 1\n")
    async with YamlResource(name="w", file_path=path) as resource:
        with pytest.raises(XResourceDataError, match="cannot write"):
            await resource.write({"a": object()})
    assert path.read_text() == "a: 1\n"


# ---- the shipped manifests ----------------------------------------------------------------

SHIPPED = sorted(p for p in (ROOT / "resources.d").iterdir() if p.suffix in (".yaml", ".yml", ".toml"))
SHIPPED_FILE_TYPES = {"csv", "excel", "json", "yaml"}


def load_manifest(path: Path) -> dict[str, Any]:
    if path.suffix == ".toml":
        return tomllib.loads(path.read_text(encoding="utf-8"))
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_shipped_manifests_cover_every_file_type_in_yaml_and_toml() -> None:
    docs = {p.name: load_manifest(p) for p in SHIPPED}
    file_docs = {name: d for name, d in docs.items() if d["type"] in SHIPPED_FILE_TYPES}
    assert {d["type"] for d in file_docs.values()} == SHIPPED_FILE_TYPES
    assert any(name.endswith(".toml") for name in file_docs)
    for name, doc in file_docs.items():
        assert doc["tags"], name
        assert doc["file_path"].startswith("../examples/data/"), name
        if not name.endswith(".toml"):
            first = (ROOT / "resources.d" / name).read_text().splitlines()[0]
            assert first == "# yaml-language-server: $schema=../schemas/resource.schema.json"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
async def test_shipped_manifests_connect_and_read(path: Path) -> None:
    data = load_manifest(path)
    if data["type"] not in SHIPPED_FILE_TYPES:
        pytest.skip("not a file resource")
    cls = ResourceFactory.get_class(data["type"])
    resource = cls.model_validate(data, context={"base_dir": path.parent})
    assert isinstance(resource, FileResource)
    assert resource.file_path.resolve().parent == ROOT / "examples" / "data"
    async with resource:
        rows = await resource.read()
        chunks = await collect(resource, 2)
        assert await resource.validate_connection()
    assert isinstance(rows, list)
    assert len(rows) >= 3
    assert all(isinstance(row, dict) for row in rows)
    assert [row for chunk in chunks for row in chunk] == rows


async def test_shipped_product_schema_accepts_the_sample(tmp_path: Path) -> None:
    data = ROOT / "examples" / "data"
    async with JsonResource(
        name="products", file_path=data / "products.json", json_schema=data / "products.schema.json"
    ) as resource:
        assert len(await resource.read()) == len(
            [row async for chunk in resource.read_stream(4) for row in chunk]
        )


def test_sample_workbook_is_what_make_xlsx_builds(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples" / "data"))
    try:
        import make_xlsx
    finally:
        sys.path.remove(str(ROOT / "examples" / "data"))
    rebuilt = tmp_path / "orders.xlsx"
    make_xlsx.build(rebuilt)

    def cells(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}
        finally:
            book.close()

    assert cells(rebuilt) == cells(ROOT / "examples" / "data" / "orders.xlsx")


def test_errors_are_in_the_tree() -> None:
    assert issubclass(XResourceDataError, XResourceError)
    assert issubclass(XResourceDataError, ValueError)
