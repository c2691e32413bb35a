"""The columnar path (``read_batches``, ``read_frame``) of csv and json resources, and JSON lines."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.backends.test_files_typed import CSV_TEXT, EVERY_TYPE, EXPECTED
from xresource.backends.files import arrow
from xresource.backends.files.csv import CsvResource
from xresource.backends.files.json import JsonResource
from xresource.errors import MissingDependencyError, XResourceDataError, XResourceStateError

pa = pytest.importorskip("pyarrow")


async def batches_of(resource: CsvResource | JsonResource, batch_size: int = 65_536) -> list[Any]:
    return [batch async for batch in resource.read_batches(batch_size)]


def rows_of(batches: list[Any]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


async def batch_error(resource: CsvResource | JsonResource, batch_size: int = 65_536) -> XResourceDataError:
    try:
        await batches_of(resource, batch_size)
    except XResourceDataError as exc:
        return exc
    raise AssertionError("read_batches ended without an error")


def csv_resource(path: Path, text: str, columns: dict[str, str] | None = None, **fields: Any) -> CsvResource:
    path.write_text(text, encoding=fields.get("encoding", "utf-8"))
    return CsvResource(name="data", file_path=path, columns=columns, **fields)


# ---- csv ------------------------------------------------------------------------------------------


async def test_csv_batches_hold_the_values_read_gives(tmp_path: Path) -> None:
    async with csv_resource(tmp_path / "typed.csv", CSV_TEXT, EVERY_TYPE) as resource:
        batches = await batches_of(resource, 2)
        assert rows_of(batches) == EXPECTED == await resource.read()
    assert [batch.num_rows for batch in batches] == [2, 1]
    assert dict(zip(batches[0].schema.names, map(str, batches[0].schema.types), strict=True)) == {
        "id": "int64",
        "price": "decimal128(38, 9)",
        "weight": "double",
        "day": "date32[day]",
        "at": "timestamp[us, tz=UTC]",
        "ok": "bool",
        "name": "string",
        "note": "string",  # not declared: text, as read() gives it
    }


async def test_naive_datetimes_stay_naive_and_undeclared_columns_stay_text(tmp_path: Path) -> None:
    text = "at,n\n2024-01-02T03:04:05,007\n,8\n"
    async with csv_resource(tmp_path / "a.csv", text, {"at": "datetime"}) as resource:
        assert rows_of(await batches_of(resource)) == [
            {"at": dt.datetime(2024, 1, 2, 3, 4, 5), "n": "007"},
            {"at": None, "n": "8"},
        ]


async def test_batches_are_bounded_by_the_block_and_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([i, f"row {i} " + "x" * 40] for i in range(60_000))
    assert path.stat().st_size > 2.5 * arrow.BLOCK_BYTES
    resource = CsvResource(name="big", file_path=path, columns={"id": "int"})
    async with resource:
        large = await batches_of(resource)
        small = await batches_of(resource, 1000)
    # Arrow reads a block at a time, so even a large batch_size gives one batch per block.
    assert len(large) >= 3
    assert max(batch.num_rows for batch in large) < 60_000
    assert all(batch.num_rows <= 1000 for batch in small)
    assert sum(batch.num_rows for batch in small) == 60_000
    assert [row["id"] for row in rows_of(small)] == list(range(60_000))


async def test_dialect_encoding_and_no_header(tmp_path: Path) -> None:
    text = "\n'Zoë';'a;b'\n'x''y';2\n"
    resource = csv_resource(
        tmp_path / "latin.csv", text, delimiter=";", quotechar="'", encoding="latin-1", has_header=False
    )
    async with resource:
        assert rows_of(await batches_of(resource)) == [{"f0": "Zoë", "f1": "a;b"}, {"f0": "x'y", "f1": "2"}]
        assert await resource.read() == [["Zoë", "a;b"], ["x'y", "2"]]


async def test_empty_file_and_header_only(tmp_path: Path) -> None:
    async with csv_resource(tmp_path / "empty.csv", "", {"id": "int"}) as resource:
        assert await batches_of(resource) == []
        assert (await resource.read_frame("arrow")).num_rows == 0
    async with csv_resource(tmp_path / "head.csv", "id,name\n", {"id": "int"}) as resource:
        assert rows_of(await batches_of(resource)) == []


async def test_csv_value_that_does_not_parse_names_line_column_and_name(tmp_path: Path) -> None:
    good = "".join(f"{i},{i}\n" for i in range(50_000))  # the bad row is in a later block
    text = f'id,qty\n{good}\n50000,"lots"\n'
    async with csv_resource(tmp_path / "bad.csv", text, {"qty": "int"}) as resource:
        error = await batch_error(resource, 1000)
    assert (error.line, error.column) == (50_003, 2)
    assert "bad.csv:50003:2: column 'qty' (int): 'lots' is not a whole number" in str(error)


async def test_row_wider_or_shorter_than_header_names_its_line(tmp_path: Path) -> None:
    for text, line in (("a,b\n1,2\n\n3,4,5\n", 4), ('a,b\n"1\n",2\n3\n', 4)):
        async with csv_resource(tmp_path / "rows.csv", text) as resource:
            error = await batch_error(resource)
        assert error.line == line, text
        assert "fields but the header has 2" in str(error)


async def test_arrow_only_strictness_still_names_the_column(tmp_path: Path) -> None:
    async with csv_resource(tmp_path / "d.csv", "p\n1.5\n1.0000000001\n", {"p": "decimal"}) as resource:
        assert await resource.read() == [{"p": Decimal("1.5")}, {"p": Decimal("1.0000000001")}]
        error = await batch_error(resource)
    assert (error.line, error.column) == (3, 1)
    assert "d.csv:3:1: column 'p' (decimal): '1.0000000001': Rescaling Decimal value would cause" in str(
        error
    )
    # Blank lines and a value over two lines: Arrow counts records, the error still names the line.
    text = 'p,q\n1.5,"a\nb"\n\n2.5,c\n1.0000000001,d\n'
    async with csv_resource(tmp_path / "d.csv", text, {"p": "decimal"}) as resource:
        error = await batch_error(resource)
    assert (error.line, error.column) == (6, 1)


async def test_declared_column_missing_from_header(tmp_path: Path) -> None:
    async with csv_resource(tmp_path / "h.csv", "\nid\n1\n", {"idd": "int"}) as resource:
        error = await batch_error(resource)
    assert error.line == 2
    assert "columns declares 'idd'" in str(error)


@pytest.mark.parametrize("batch_size", [0, -1, True, "10", 1.5])
async def test_batch_size_must_be_a_positive_integer(tmp_path: Path, batch_size: Any) -> None:
    async with csv_resource(tmp_path / "a.csv", "a\n1\n") as resource:
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            resource.read_batches(batch_size)


async def test_read_batches_needs_a_connected_resource(tmp_path: Path) -> None:
    resource = csv_resource(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(XResourceStateError):
        resource.read_batches()


async def test_missing_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with csv_resource(tmp_path / "a.csv", "a\n1\n") as resource:
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
        with pytest.raises(MissingDependencyError, match=r"pip install 'xresource\[arrow\]'"):
            resource.read_batches()
        with pytest.raises(MissingDependencyError, match=r"xresource\[arrow\]"):
            await resource.read_frame("arrow")


# ---- read_frame -----------------------------------------------------------------------------------


async def test_read_frame_for_arrow_pandas_and_polars(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    async with csv_resource(tmp_path / "typed.csv", CSV_TEXT, EVERY_TYPE) as resource:
        table = await resource.read_frame("arrow")
        pandas_frame = await resource.read_frame()
        polars_frame = await resource.read_frame("polars")
    assert table.to_pylist() == EXPECTED
    assert type(pandas_frame).__module__.startswith("pandas")
    assert pandas_frame["id"].tolist() == [1, 2, 3]
    assert polars_frame.to_dicts() == EXPECTED
    assert str(polars_frame.schema["at"]) == "Datetime(time_unit='us', time_zone='UTC')"


async def test_read_frame_names_the_extra_of_a_missing_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with csv_resource(tmp_path / "a.csv", "a\n1\n") as resource:
        monkeypatch.setitem(sys.modules, "polars", None)
        with pytest.raises(MissingDependencyError, match=r"pip install 'xresource\[polars\]'"):
            await resource.read_frame("polars")
        with pytest.raises(ValueError, match="library must be 'arrow', 'pandas' or 'polars'"):
            await resource.read_frame("numpy")  # type: ignore[arg-type]


# ---- JSON lines -----------------------------------------------------------------------------------

RECORDS = [
    {"id": 1, "name": "ada", "tags": ["x"], "score": 1.5},
    {"id": 2, "name": "zoë", "tags": [], "score": None},
    {"id": 3, "name": "grace", "tags": ["y", "z"], "score": 2.0},
]


def jsonl(path: Path, text: str, **fields: Any) -> JsonResource:
    path.write_text(text, encoding=fields.get("encoding", "utf-8"))
    return JsonResource(name="lines", file_path=path, lines=True, **fields)


async def test_json_lines_read_stream_write(tmp_path: Path) -> None:
    text = "".join(json.dumps(r) + "\n" + ("\n" if i == 0 else "") for i, r in enumerate(RECORDS))
    async with jsonl(tmp_path / "a.jsonl", text) as resource:
        assert await resource.read() == RECORDS
        assert [chunk async for chunk in resource.read_stream(2)] == [RECORDS[:2], RECORDS[2:]]
        await resource.write([*RECORDS, {"id": 4}])
        assert resource.file_path.read_text(encoding="utf-8").splitlines()[1] == (
            '{"id": 2, "name": "zoë", "tags": [], "score": null}'
        )
        assert await resource.read() == [*RECORDS, {"id": 4}]
        with pytest.raises(XResourceDataError, match="expected a list of documents"):
            await resource.write({"id": 5})


async def test_json_lines_errors_name_the_line(tmp_path: Path) -> None:
    async with jsonl(tmp_path / "a.jsonl", '{"id": 1}\n\n{"id": \n') as resource:
        with pytest.raises(XResourceDataError, match=r"a\.jsonl:3:8: invalid JSON: Expecting value"):
            await resource.read()
        error = await batch_error(resource)
    assert (error.line, error.column) == (3, 8)


async def test_json_lines_schema_applies_to_each_line(tmp_path: Path) -> None:
    pytest.importorskip("jsonschema")
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    async with jsonl(tmp_path / "a.jsonl", '{"id": 1}\n{"id": "two"}\n', json_schema=schema) as resource:
        with pytest.raises(XResourceDataError, match=r"line 2 does not match json_schema at \$\.id"):
            await resource.read()
        with pytest.raises(XResourceDataError, match="cannot write document 1 does not match"):
            await resource.write([{"id": 1}, {"name": "no id"}])
        assert resource.file_path.read_text() == '{"id": 1}\n{"id": "two"}\n'


async def test_json_lines_batches(tmp_path: Path) -> None:
    text = "".join(json.dumps(r) + "\n" for r in RECORDS)
    async with jsonl(tmp_path / "a.jsonl", text) as resource:
        batches = await batches_of(resource, 2)
        assert rows_of(batches) == await resource.read()
    assert [b.num_rows for b in batches] == [2, 1]
    latin = jsonl(tmp_path / "latin.jsonl", '{"name": "Zoë"}\n', encoding="latin-1")
    async with latin:
        assert rows_of(await batches_of(latin)) == [{"name": "Zoë"}]


async def test_json_lines_batches_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"id": i, "pad": "x" * 40}) + "\n" for i in range(60_000)))
    assert path.stat().st_size > 2.5 * arrow.BLOCK_BYTES
    async with JsonResource(name="big", file_path=path, lines=True) as resource:
        batches = await batches_of(resource)
    assert len(batches) >= 3
    assert [row["id"] for row in rows_of(batches)] == list(range(60_000))


async def test_json_array_batches_come_from_the_streaming_parser(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(RECORDS))
    async with JsonResource(name="array", file_path=path) as resource:
        batches = await batches_of(resource, 2)
        assert rows_of(batches) == RECORDS
        assert [b.num_rows for b in batches] == [2, 1]
    path.write_text("[1, 2]")
    async with JsonResource(name="scalars", file_path=path) as resource:
        error = await batch_error(resource)
    assert "read_batches needs an array of objects" in str(error)
    path.write_text(json.dumps([{"id": 1}, {"id": "one"}]))
    async with JsonResource(name="mixed", file_path=path) as resource:
        error = await batch_error(resource, 1)
    assert "items 1..1 do not fit the columns of the first batch" in str(error)


async def test_stopping_early_closes_the_file(tmp_path: Path) -> None:
    from tests.backends.test_files import open_fds_to, wait_closed

    path = tmp_path / "many.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(300_000)))
    async with CsvResource(name="many", file_path=path, columns={"n": "int"}) as resource:
        async for batch in resource.read_batches(10):
            assert batch.to_pylist() == [{"n": i} for i in range(10)]
            assert open_fds_to(path)  # the reader holds the file while the stream runs
            break
        await wait_closed(path)


async def test_a_row_longer_than_a_block_is_read_with_larger_blocks(tmp_path: Path) -> None:
    long_text = "y" * (3 * arrow.BLOCK_BYTES)
    rows = [[i, f"row {i}"] for i in range(20_000)]
    rows[15_000][1] = long_text  # several blocks in: the rows before it are not repeated
    path = tmp_path / "long.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["id", "text"], *rows])
    async with CsvResource(name="long", file_path=path, columns={"id": "int"}) as resource:
        got = rows_of(await batches_of(resource, 4096))
    assert got == [{"id": i, "text": text} for i, text in rows]

    lines = tmp_path / "long.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in rows))
    async with JsonResource(name="long", file_path=lines, lines=True) as resource:
        assert rows_of(await batches_of(resource)) == [{"id": i, "text": text} for i, text in rows]


@pytest.mark.parametrize(("kind", "text"), [("csv", "id\n1\n"), ("json", '{"id": 1}\n')])
async def test_read_batches_opens_only_files_within_the_allowed_roots(
    tmp_path: Path, kind: str, text: str
) -> None:
    from xresource.errors import XResourceConnectionError
    from xresource.registry import Registry
    from xresource.settings import RegistrySettings, Settings

    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    outside = tmp_path / "outside.data"
    outside.write_text(text.replace("1", "4711"))
    data = root / f"a.{kind}"
    data.write_text(text)
    lines = "lines: true\n" if kind == "json" else ""
    (root / "m" / "a.yaml").write_text(f"name: a\ntype: {kind}\nfile_path: {data}\n{lines}")
    settings = Settings(registry=RegistrySettings(allowed_roots=[root], health_interval=0, retry_initial=60))
    async with Registry(root / "m", settings=settings) as registry:
        resource = registry.get("a")
        assert rows_of(await batches_of(resource)) == [{"id": "1" if kind == "csv" else 1}]
        data.unlink()
        data.symlink_to(outside)
        with pytest.raises(XResourceConnectionError, match="outside the allowed roots") as caught:
            await batches_of(resource)
        assert "4711" not in str(caught.value)
