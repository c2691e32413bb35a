"""``json``: a JSON document, optionally validated against a JSON Schema.

``read()`` parses the whole document with the stdlib. ``read_stream()`` yields
the items of a top-level array in chunks without parsing the whole document
(ijson, with its C backend when available), so a large array streams in memory
bounded by the chunk; any other document is yielded once, as ``[document]``.

With ``json_schema`` set, data is validated with the ``jsonschema`` package
(an optional dependency, imported at connect): ``read()`` checks the whole
document; ``read_stream()`` checks each item against the schema's ``items``
subschema as it arrives, and the rest of the schema against the array's
shape, but constraints on the array as a whole (``minItems``, ``uniqueItems``,
``contains`` ...) are checked by ``read()`` only. ``write()`` validates before
it replaces the file, so a write never leaves data that its schema rejects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ValidationInfo, field_validator

from xresource._optional import require
from xresource.backends.files import _jsonlines as jsonlines
from xresource.backends.files._base import Chunks, FileRuntime, TextFileResource, resolve_against_base
from xresource.errors import XResourceConnectionError, XResourceDataError

# asyncio is imported inside the functions that use it: `xresource validate` loads this module
# for the model only and never pays for asyncio (docs/performance.md).

if TYPE_CHECKING:
    from xresource.backends.files.arrow import FrameLibrary

# Keywords about an array as a whole or its items, left out of the check of the array's
# shape at the start of a stream (items are checked one by one, the rest only by read()).
_ARRAY_KEYWORDS = frozenset(
    {
        "items",
        "prefixItems",
        "additionalItems",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "minItems",
        "maxItems",
        "uniqueItems",
    }
)
_BOM = b"\xef\xbb\xbf"
_MESSAGE_LIMIT = 300


class JsonResource(TextFileResource):
    """A JSON file; a top-level array streams item by item."""

    type: Literal["json"] = "json"
    example_name: ClassVar[str | None] = "products"
    file_suffix: ClassVar[str] = "json"
    supports_write: ClassVar[bool] = True

    json_schema: dict[str, Any] | Path | None = None
    """A JSON Schema the data must match: inline, or a schema file's path (relative to the manifest)."""
    lines: bool = False
    """The file is JSON lines (``.jsonl``, ``.ndjson``): one document per line; ``read()`` returns
    the list of documents, and ``json_schema`` applies to each of them."""

    if TYPE_CHECKING:
        _rt: JsonRuntime | None

    @field_validator("json_schema", mode="after")
    @classmethod
    def _resolve_schema_path(
        cls, value: dict[str, Any] | Path | None, info: ValidationInfo
    ) -> dict[str, Any] | Path | None:
        return resolve_against_base(value, info) if isinstance(value, Path) else value

    def _metadata_details(self) -> dict[str, Any]:
        return {**super()._metadata_details(), "validated": self.json_schema is not None}

    # ---- lifecycle ------------------------------------------------------------------------

    async def _build_runtime(self) -> JsonRuntime:
        if self.json_schema is None:
            return JsonRuntime(None, None)
        # Importing jsonschema and reading a schema file are slow enough to keep off the loop.
        import asyncio

        return await asyncio.to_thread(self._build_validator)

    def _validator(self) -> Any:
        """The compiled ``json_schema`` validator (None without a schema)."""
        rt = self._rt
        if rt is None:
            raise self._not_connected()
        return rt.validator

    def _build_validator(self) -> JsonRuntime:
        jsonschema = require("jsonschema", "jsonschema", type_name=self.type)
        schema = self._load_schema()
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = _json_path(exc.absolute_path)
            raise XResourceDataError(
                f"{self.label}: json_schema is not a valid JSON Schema at {where}: {_short(exc.message)}"
            ) from None
        return JsonRuntime(cls(schema, format_checker=cls.FORMAT_CHECKER), jsonschema.exceptions.best_match)

    def _load_schema(self) -> Any:
        schema = self.json_schema
        if not isinstance(schema, Path):
            return schema
        if not schema.is_file():
            raise XResourceConnectionError(f"{self.label}: json_schema file {str(schema)!r} does not exist")
        try:
            return json.loads(self.read_checked(schema, "json_schema").decode("utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise XResourceDataError(
                f"{self.label}: {schema}:{exc.lineno}:{exc.colno}: json_schema file is not valid JSON: "
                f"{exc.msg}",
                path=str(schema),
                line=exc.lineno,
                column=exc.colno,
            ) from None

    # ---- reading --------------------------------------------------------------------------

    def _read_sync(self) -> Any:
        if self.lines:
            return jsonlines.read_all(self)
        with self._open_text() as handle:
            try:
                document = json.load(handle)
            except json.JSONDecodeError as exc:
                raise self.data_error(f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
            except RecursionError:
                raise self.data_error("invalid JSON: nested too deeply") from None
        validator = self._validator()
        if validator is not None:
            self._check(validator, document, "data")
        return document

    def _iter_chunks(self, chunk_size: int) -> Chunks:
        if self.lines:
            yield from jsonlines.chunks(self, chunk_size)
            return
        if self._first_character() != "[":
            yield [self._read_sync()]
            return
        import ijson

        item_validator = None
        validator = self._validator()
        if validator is not None:
            schema = validator.schema
            if isinstance(schema, dict):
                shell = {key: value for key, value in schema.items() if key not in _ARRAY_KEYWORDS}
                self._check(validator.evolve(schema=shell), [], "the top-level array")
                if isinstance(schema.get("items"), dict | bool):
                    # evolve keeps the root's reference resolver, so "$ref": "#/$defs/..." works.
                    item_validator = validator.evolve(schema=schema["items"])
        with closing(self._array_items()) as items:
            index = 0
            while True:
                try:
                    chunk = list(islice(items, chunk_size))
                except ijson.JSONError as exc:
                    raise self.data_error(f"invalid JSON after item {index}: {exc}") from None
                if not chunk:
                    return
                if item_validator is not None:
                    for offset, item in enumerate(chunk):
                        self._check(item_validator, item, f"item {index + offset}", (index + offset,))
                index += len(chunk)
                yield chunk

    def _array_items(self) -> Generator[Any, None, None]:
        """The items of the top-level array, parsed as the file is read."""
        import ijson

        done = 0
        try:
            with self._open_utf8() as source:
                for item in ijson.items(source, "item", use_float=True):
                    yield item
                    done += 1
            return
        except ijson.JSONError as exc:
            if "integer overflow" not in str(exc) or ijson.backend == "python":
                raise
        # yajl's C parser stops at integers beyond 64 bits, which JSON allows and json.load reads.
        # ijson's pure-Python parser reads them (much more slowly): resume with it past the items
        # already given out.
        python = ijson.get_backend("python")
        with self._open_utf8() as source:
            yield from islice(python.items(source, "item", use_float=True), done, None)

    def _first_character(self) -> str:
        """The first character that is not white space ("" for an empty file)."""
        with self._open_text() as handle:
            while block := handle.read(4096):
                stripped = block.lstrip(" \t\r\n")
                if stripped:
                    return stripped[0]
        return ""

    @contextmanager
    def _open_utf8(self) -> Iterator[IO[bytes] | _Utf8Reader]:
        """The file as UTF-8 bytes (what ijson parses), past any byte order mark."""
        if self.is_utf8:
            with self.open_checked(self.file_path, "file_path") as raw:
                if raw.read(len(_BOM)) != _BOM:
                    raw.seek(0)
                yield raw
        else:
            with self._open_text() as text:
                yield _Utf8Reader(text)

    def _check(self, validator: Any, instance: Any, what: str, prefix: Sequence[Any] = ()) -> None:
        rt = self._rt
        if rt is None or rt.best_match is None:
            raise self._not_connected()
        error = rt.best_match(validator.iter_errors(instance))
        if error is not None:
            where = _json_path([*prefix, *error.absolute_path])
            raise self.data_error(f"{what} does not match json_schema at {where}: {_short(error.message)}")

    # ---- columnar (the arrow extra) ---------------------------------------------------------

    def read_batches(self, batch_size: int = 65_536) -> AsyncIterator[Any]:
        """Yield Arrow record batches (``pyarrow.RecordBatch``) of at most ``batch_size`` rows each.

        JSON lines are parsed by Arrow block by block; a top-level array of objects is parsed
        by ``read_stream``'s parser, one batch at a time. Needs ``pip install 'xresource[arrow]'``.
        """
        from xresource.backends.files import arrow  # pyarrow's glue, loaded on first use

        return arrow.stream(self, batch_size, arrow.json_batches)

    async def read_frame(self, library: FrameLibrary = "pandas") -> Any:
        """The whole file as a pandas or polars ``DataFrame``, or a ``pyarrow.Table`` (``"arrow"``)."""
        from xresource.backends.files import arrow

        return await arrow.read_frame(self, library, arrow.json_batches)

    # ---- writing --------------------------------------------------------------------------

    def _write_sync(self, data: Any) -> None:
        if self.lines:
            jsonlines.write(self, data)
            return
        validator = self._validator()
        if validator is not None:
            self._check(validator, data, "cannot write: data")
        try:
            text = json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
            encoded = text.encode(self.encoding)
        except (TypeError, ValueError, RecursionError) as exc:
            raise self.data_error(f"cannot write: {exc}") from None
        self._atomic_write(lambda handle: handle.write(encoded))


class JsonRuntime(FileRuntime):
    """The compiled ``json_schema`` validator and jsonschema's ``best_match`` (both None without a schema)."""

    __slots__ = ("best_match", "validator")

    def __init__(self, validator: Any, best_match: Callable[[Any], Any] | None) -> None:
        self.validator = validator
        self.best_match = best_match


class _Utf8Reader:
    """Re-encode a text file in another encoding as UTF-8 bytes for ijson."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def read(self, size: int = -1) -> bytes:
        return self._text.read(size).encode("utf-8")


def _json_path(parts: Sequence[Any]) -> str:
    """``$[3].email`` style location of a value inside a document."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _short(message: str) -> str:
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "..."
