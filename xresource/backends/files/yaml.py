"""``yaml``: a YAML file, read with PyYAML's safe loader (libyaml's when installed).

Documents: by default the file holds one document, ``read()`` returns it and a
file with several documents is an error (saying how to read them). With
``multi_document: true``, ``read()`` returns the list of documents and
``read_stream()`` yields documents in chunks, loading one at a time. An empty
file is no document: ``read()`` gives ``None`` (``[]`` with multi_document).

Streaming a single document: ``read_stream()`` yields the items of a top-level
sequence in chunks without building the whole sequence. The parser's event
stream (libyaml, in C) is composed and constructed one item at a time by
PyYAML's own composer and safe constructor, so memory is bounded by the chunk
(plus any anchored nodes, which aliases may refer to later). Any other
document is yielded once, as ``[document]``.

The safe loader builds only plain data: a tag that would build an object is an
error that names its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from itertools import islice
from typing import Any, ClassVar, Literal, TextIO

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from xresource.backends.files._base import Chunks, TextFileResource
from xresource.errors import XResourceDataError

# libyaml's C loader and dumper when PyYAML was built with it, the pure-Python ones otherwise.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class YamlResource(TextFileResource):
    """A YAML file; a top-level sequence streams item by item."""

    type: Literal["yaml"] = "yaml"
    example_name: ClassVar[str | None] = "feature_flags"
    file_suffix: ClassVar[str] = "yaml"
    supports_write: ClassVar[bool] = True

    multi_document: bool = False
    """Treat the file as a stream of documents (``---`` separated): read() returns their list,
    read_stream() yields documents, write() takes a list of documents."""

    # ---- reading --------------------------------------------------------------------------

    def _read_sync(self) -> Any:
        with self._open_text() as handle:
            try:
                if self.multi_document:
                    return list(yaml.load_all(handle, Loader=_Loader))
                return yaml.load(handle, Loader=_Loader)  # noqa: S506 - _Loader is a safe loader
            except yaml.YAMLError as exc:
                raise self._yaml_error(exc) from None

    def _iter_chunks(self, chunk_size: int) -> Chunks:
        with self._open_text() as handle:
            try:
                if self.multi_document:
                    documents = yaml.load_all(handle, Loader=_Loader)
                    while chunk := list(islice(documents, chunk_size)):
                        yield chunk
                else:
                    yield from _chunks_of_single_document(_item_loader(handle), chunk_size, self)
            except yaml.YAMLError as exc:
                raise self._yaml_error(exc) from None

    def _yaml_error(self, exc: yaml.YAMLError) -> XResourceDataError:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        if isinstance(exc, yaml.composer.ComposerError) and "single document" in str(exc):
            return self.data_error(
                "the file holds several YAML documents; set multi_document: true to read them as a list",
                line=line,
                column=column,
            )
        problem = getattr(exc, "problem", None)
        context = getattr(exc, "context", None)
        detail = (f"{problem} ({context})" if context else problem) if problem else str(exc)
        return self.data_error(f"invalid YAML: {detail}", line=line, column=column)

    # ---- writing --------------------------------------------------------------------------

    def _write_sync(self, data: Any) -> None:
        options: dict[str, Any] = {
            "Dumper": _Dumper,
            "sort_keys": False,
            "allow_unicode": True,
            "default_flow_style": False,
        }
        if self.multi_document and (isinstance(data, str | bytes | dict) or not isinstance(data, list)):
            raise self.data_error(
                f"cannot write: multi_document is true, so data must be a list of documents, "
                f"got {type(data).__name__}"
            )
        try:
            text = yaml.dump_all(data, **options) if self.multi_document else yaml.dump(data, **options)
        except yaml.YAMLError as exc:
            raise self.data_error(f"cannot write: {exc}") from None

        def fill(handle: TextIO) -> None:
            handle.write(text)

        self._atomic_write_text(fill)


def _item_loader(handle: TextIO) -> Any:
    """A safe loader whose composer (PyYAML's, in Python) can build one node at a time."""
    if not getattr(yaml, "__with_libyaml__", False):
        return yaml.SafeLoader(handle)
    return _c_item_loader_class()(handle)


@cache
def _c_item_loader_class() -> type[Any]:
    from yaml._yaml import CParser

    class _ItemLoader(Composer, CParser, SafeConstructor, Resolver):
        """libyaml's parser for the events, PyYAML's composer to build nodes item by item."""

        def __init__(self, stream: TextIO) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

    return _ItemLoader


def _chunks_of_single_document(loader: Any, chunk_size: int, resource: YamlResource) -> Iterator[list[Any]]:
    try:
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return  # an empty file: no document, nothing to yield
        loader.get_event()  # DocumentStart
        if not loader.check_event(yaml.SequenceStartEvent):
            document = loader.construct_document(loader.compose_node(None, None))
            loader.get_event()  # DocumentEnd
            _expect_end(loader, resource)
            yield [document]
            return
        loader.get_event()  # SequenceStart
        chunk: list[Any] = []
        while not loader.check_event(yaml.SequenceEndEvent):
            # construct_document forgets what it built, so only the anchors stay in memory.
            chunk.append(loader.construct_document(loader.compose_node(None, None)))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
        loader.get_event()  # SequenceEnd
        loader.get_event()  # DocumentEnd
        _expect_end(loader, resource)
        if chunk:
            yield chunk
    finally:
        loader.dispose()


def _expect_end(loader: Any, resource: YamlResource) -> None:
    if not loader.check_event(yaml.StreamEndEvent):
        mark = loader.peek_event().start_mark
        raise resource.data_error(
            "the file holds several YAML documents; set multi_document: true to read them as a list",
            line=mark.line + 1,
            column=mark.column + 1,
        )
