"""JSON lines (``lines: true`` on a ``json`` resource): one JSON document per line.

``read()`` returns the list of documents, ``read_stream()`` yields them in chunks (one
line parsed at a time, so memory is bounded by the chunk), and ``write(rows)`` writes one
compact document per line. Blank lines are skipped. With ``json_schema``, each document is
validated against the schema, as it is read and before anything is written. An error names
the line (and the column, for invalid JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

from xresource.backends.files._base import Chunks

if TYPE_CHECKING:
    from xresource.backends.files.json import JsonResource


def read_all(resource: JsonResource) -> list[Any]:
    documents: list[Any] = []
    for chunk in chunks(resource, 1 << 30):
        documents.extend(chunk)
    return documents


def chunks(resource: JsonResource, chunk_size: int) -> Chunks:
    validator = resource._validator()
    with resource._open_text() as handle:
        numbered = ((n, text) for n, text in enumerate(handle, start=1) if not text.isspace())
        while batch := list(islice(numbered, chunk_size)):
            out = []
            for number, text in batch:
                try:
                    document = json.loads(text.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise resource.data_error(
                        f"invalid JSON: {exc.msg}", line=number, column=exc.colno
                    ) from None
                except RecursionError:
                    raise resource.data_error("invalid JSON: nested too deeply", line=number) from None
                if validator is not None:
                    resource._check(validator, document, f"line {number}")
                out.append(document)
            yield out


def write(resource: JsonResource, data: Any) -> None:
    if isinstance(data, str | bytes | Mapping) or not hasattr(data, "__iter__"):
        raise resource.data_error(f"cannot write: expected a list of documents, got {type(data).__name__}")
    documents = list(data)
    lines = []
    validator = resource._validator()
    for index, document in enumerate(documents):
        if validator is not None:
            resource._check(validator, document, f"cannot write document {index}")
        try:
            lines.append(json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n")
        except (TypeError, ValueError, RecursionError) as exc:
            raise resource.data_error(f"cannot write document {index}: {exc}") from None
    try:
        encoded = "".join(lines).encode(resource.encoding)
    except UnicodeError as exc:
        raise resource.data_error(f"cannot write: {exc}") from None
    resource._atomic_write(lambda handle: handle.write(encoded))
