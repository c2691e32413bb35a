"""``FileResource``: what the csv, excel, json and yaml backends share.

Parsing runs in worker threads, so a large file never blocks the event loop.
``read_stream`` keeps the file open in a synchronous generator and pulls chunks
from it in worker-thread hops (one chunk per hop, or a few small ones: a hop
per row would cost far more than the parsing), reading ahead while the
consumer works on the current chunk, so memory is bounded by the chunk, not
by the file. ``write`` replaces the file atomically: a temporary file in the
same folder, fsynced, then ``os.replace``, so a reader sees the old content or
the new one, never half of it.

``connect()`` checks that the file is there and readable and builds the
resource's runtime (``self._rt``: a :class:`FileRuntime`, or a backend's
subclass holding driver state such as a compiled JSON Schema validator).

A backend implements three synchronous hooks, all run in a worker thread:
``_read_sync()`` (the whole file), ``_iter_chunks(chunk_size)`` (a generator of
chunks) and ``_write_sync(data)``; it raises :class:`XResourceDataError`, built
with :meth:`FileResource.data_error`, for malformed content.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import io
import os
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from contextlib import aclosing
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, TextIO

from pydantic import ValidationInfo, field_validator

from xresource.errors import XResourceConnectionError, XResourceDataError, XResourceError
from xresource.resource import XResource

# asyncio is imported inside the functions that use it: `xresource validate` loads this module
# for the model only and never pays for asyncio (docs/performance.md).
if TYPE_CHECKING:
    import asyncio

Row = dict[str, Any]
Chunks = Generator[list[Any], None, None]

# When chunks are small, one worker-thread hop reads several, until it holds this many rows
# or has read for this many seconds (see iterate_in_thread).
HOP_ROWS = 4096
HOP_SECONDS = 0.01


class FileRuntime:
    """A connected file resource; backends with driver state subclass it (slots only)."""

    __slots__ = ()


class FileResource(XResource):
    """A resource backed by one local file."""

    if TYPE_CHECKING:
        _rt: FileRuntime | None

    family: ClassVar[str] = "file"
    supports_write: ClassVar[bool] = False
    file_suffix: ClassVar[str] = ""
    """The usual file name suffix of the format (``xlsx``), for example paths; the type name if empty."""

    file_path: Path
    """Path of the data file; a relative path resolves against the manifest's folder."""

    @field_validator("file_path", mode="after")
    @classmethod
    def _resolve_relative(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_against_base(value, info)

    def target(self) -> str:
        return str(self.file_path)

    @property
    def table_name(self) -> str:
        return self.file_path.stem

    # ---- lifecycle ------------------------------------------------------------------------

    async def _connect(self) -> None:
        path = self.file_path
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise XResourceConnectionError(f"{self.label}: file {str(path)!r} {what}")
        if not os.access(path, os.R_OK):
            raise XResourceConnectionError(f"{self.label}: file {str(path)!r} is not readable")
        self._rt = await self._build_runtime()

    async def _build_runtime(self) -> FileRuntime:
        """The runtime of a connected resource (backends with driver state override)."""
        return FileRuntime()

    async def _validate_connection(self) -> bool:
        return self.file_path.is_file()

    async def list_collections_or_tables(self) -> list[str]:
        return [self.table_name]

    def _metadata_details(self) -> dict[str, Any]:
        try:
            size: int | None = self.file_path.stat().st_size
        except OSError:
            size = None
        return {"file_path": str(self.file_path), "size_bytes": size, "table": self.table_name}

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        # Undecodable bytes are a problem with the file's content, not with reaching it.
        if isinstance(exc, UnicodeError):
            return XResourceDataError
        return None

    def data_error(
        self, message: str, *, line: int | None = None, column: int | None = None
    ) -> XResourceDataError:
        """An :class:`XResourceDataError` naming this resource and ``file:line:column``."""
        where = str(self.file_path)
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        return XResourceDataError(
            f"{self.label}: {where}: {message}", path=str(self.file_path), line=line, column=column
        )

    # ---- the file operations --------------------------------------------------------------

    async def read(self) -> Any:
        """Read the whole file (rows for tabular formats, the document otherwise)."""
        self.require_ready()
        async with self.translate_errors("read"):
            import asyncio

            return await asyncio.to_thread(self._read_sync)

    def read_stream(self, chunk_size: int = 1000) -> AsyncIterator[list[Any]]:
        """Yield chunks of ``chunk_size`` rows (the last may be shorter); memory is bounded by the chunk.

        The next chunk is read in a worker thread while the caller handles the current one
        (see :func:`iterate_in_thread`).

        The arguments and the connection state are checked at the call, not at
        the first iteration.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"{self.label}: chunk_size must be a positive integer, got {chunk_size!r}")
        self.require_ready()
        return self._stream(chunk_size)

    async def _stream(self, chunk_size: int) -> AsyncIterator[list[Any]]:
        # aclosing: when the consumer stops early, the file is closed now, not at garbage collection.
        async with (
            self.translate_errors("read_stream"),
            aclosing(iterate_in_thread(self._iter_chunks(chunk_size))) as chunks,
        ):
            async for chunk in chunks:
                yield chunk

    async def write(self, data: Any) -> None:
        """Replace the file's content atomically (where the format allows it)."""
        if not self.supports_write:
            raise NotImplementedError(f"{self.label}: write is not supported")
        self.require_ready()
        async with self.translate_errors("write"):
            import asyncio

            await asyncio.to_thread(self._write_sync, data)

    # ---- for backends (run in a worker thread) --------------------------------------------

    def _read_sync(self) -> Any:
        raise NotImplementedError

    def _iter_chunks(self, chunk_size: int) -> Chunks:
        raise NotImplementedError

    def _write_sync(self, data: Any) -> None:
        raise NotImplementedError

    def _atomic_write(self, fill: Callable[[IO[bytes]], object]) -> None:
        """Write through ``fill`` to a temporary file, then move it over the file in one step."""
        # Replace the real file, not a symlink pointing at it (ConfigMap-style layouts).
        target = Path(os.path.realpath(self.file_path))
        self.check_within_roots(target, "file_path")
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = 0o644
        # A dot name, so a directory scanner (the registry skips dot entries) ignores it.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_directory(target.parent)


class TextFileResource(FileResource):
    """A file resource whose format is text in a configurable encoding."""

    encoding: str = "utf-8"
    """Text encoding of the file (any name Python's codecs know, e.g. ``utf-8``, ``latin-1``)."""

    @field_validator("encoding", mode="after")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value

    @property
    def is_utf8(self) -> bool:
        return codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")

    @property
    def read_encoding(self) -> str:
        # Spreadsheet tools often prefix UTF-8 files with a byte order mark; "utf-8-sig" reads
        # both forms the same, so the first column name does not start with "\ufeff".
        return "utf-8-sig" if self.is_utf8 else self.encoding

    def _open_text(self, newline: str | None = None) -> TextIO:
        return io.TextIOWrapper(
            self.open_checked(self.file_path, "file_path"), self.read_encoding, newline=newline
        )

    def _atomic_write_text(self, fill: Callable[[TextIO], object], newline: str | None = None) -> None:
        def fill_bytes(raw: IO[bytes]) -> None:
            text = io.TextIOWrapper(raw, encoding=self.encoding, newline=newline)
            try:
                fill(text)
                text.flush()
            finally:
                # Detach so closing the text layer never closes the file under _atomic_write.
                with contextlib.suppress(ValueError, OSError):
                    text.detach()

        self._atomic_write(fill_bytes)


def resolve_against_base(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the manifest folder given as validation context."""
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value


async def iterate_in_thread(source: Chunks) -> AsyncGenerator[list[Any], None]:
    """Drive a synchronous chunk generator from worker threads.

    Each thread hop reads at least one chunk, and more while it holds under ``HOP_ROWS``
    rows and has read for under ``HOP_SECONDS``: a hop costs tens of microseconds (far more
    on a busy machine), so small chunks are read many at a time while large ones take one
    hop each. The next hop runs while the consumer works on the current chunks (so awaiting
    a database insert per chunk overlaps with parsing). Memory holds at most two hops' rows,
    ``2 * max(chunk_size, HOP_ROWS)``, whatever the file's size. An error comes after the
    chunks read before it.
    """
    lock = threading.Lock()
    failure: list[BaseException] = []

    def step() -> list[list[Any]]:
        with lock:
            if failure:
                raise failure.pop()
            chunks: list[list[Any]] = []
            rows = 0
            deadline = time.perf_counter() + HOP_SECONDS
            try:
                while (chunk := next(source, None)) is not None:
                    chunks.append(chunk)
                    rows += len(chunk)
                    if rows >= HOP_ROWS or time.perf_counter() >= deadline:
                        break
            except Exception as exc:
                if not chunks:
                    raise
                failure.append(exc)  # raised by the next step, after these chunks are out
            return chunks

    def close() -> None:
        with lock:
            source.close()

    import asyncio

    pending: asyncio.Future[list[list[Any]]] | None = None
    try:
        pending = asyncio.ensure_future(asyncio.to_thread(step))
        while chunks := await pending:
            pending = asyncio.ensure_future(asyncio.to_thread(step))
            for chunk in chunks:
                yield chunk
    finally:
        if pending is not None:
            if pending.done():
                _consume_outcome(pending)
            else:
                # Not started yet: it never will. Started: it finishes in its thread, unheard.
                pending.cancel()
                pending.add_done_callback(_consume_outcome)
        # A generator cannot be closed while a step runs it: then close after that step.
        if lock.acquire(blocking=False):
            try:
                source.close()
            finally:
                lock.release()
        else:
            # Not the loop's executor: this also runs while asyncio.run shuts the loop down.
            threading.Thread(target=close, name="xresource-close", daemon=True).start()


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    # Fetch the result of a read nobody waits for any more, so asyncio does not log
    # "exception was never retrieved" for it.
    if not future.cancelled():
        future.exception()


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
