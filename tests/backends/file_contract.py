"""The contract every file backend passes, written once.

A backend's test module subclasses :class:`FileContract` and supplies the hooks
listed on the class; pytest then runs every test below against that backend on
real files in ``tmp_path``. Format-specific behaviour (dialects, sheets, JSON
Schema, YAML tags) stays in the backend's own tests.
"""

from __future__ import annotations

import asyncio
import gc
import os
import stat
import tracemalloc
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.waiting import eventually
from xresource.backends.files import _base as files_base
from xresource.backends.files._base import FileResource, FileRuntime
from xresource.errors import (
    XResourceConnectionError,
    XResourceDataError,
    XResourceStateError,
)
from xresource.factory import ResourceFactory
from xresource.resource import State


async def collect(resource: FileResource, chunk_size: int) -> list[list[Any]]:
    return [chunk async for chunk in resource.read_stream(chunk_size)]


def open_fds_to(path: Path) -> list[str]:
    """This process's descriptors open on ``path`` (Linux /proc)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
        except OSError:
            continue
    return found


async def wait_closed(path: Path) -> None:
    """Wait until no descriptor is open on ``path``; a close may wait for a read in flight."""
    await eventually(lambda: not open_fds_to(path), timeout=5, what=f"{path} closed")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


class FileContract:
    """Tests shared by the file backends.

    A subclass provides:

    - ``type_name``;
    - ``sample(folder)``: ``(resource, expected)``, a resource on a file of ten
      records named ``people`` in ``folder`` and what ``read()`` returns for it;
    - ``big_sample(folder)``: a resource on a file of thousands of rows
      (``memory_sample`` may give a larger one for the memory test);
    - ``malformed(folder)``: a resource on a file whose content is broken (the
      error may come at connect or at read);
    - ``unwritable(folder)``: rows that ``write`` must refuse (only when ``supports_write``).
    """

    type_name: ClassVar[str]

    def sample(self, folder: Path) -> tuple[FileResource, Any]:
        raise NotImplementedError

    def big_sample(self, folder: Path) -> FileResource:
        raise NotImplementedError

    def malformed(self, folder: Path) -> FileResource:
        raise NotImplementedError

    def memory_sample(self, folder: Path) -> FileResource:
        """A file large enough that its rows outweigh the parser's fixed memory."""
        return self.big_sample(folder)

    def unwritable(self) -> list[Any]:
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------------

    async def test_connect_read_disconnect_twice_and_again(self, tmp_path: Path) -> None:
        resource, expected = self.sample(tmp_path)
        assert resource._rt is None
        await resource.connect()
        assert isinstance(resource._rt, FileRuntime)
        assert not hasattr(resource._rt, "__dict__")  # slotted
        assert await resource.validate_connection()
        assert await resource.read() == expected
        await resource.disconnect()
        await resource.disconnect()
        assert resource.state is State.CLOSED
        assert resource._rt is None
        async with resource:  # a closed resource connects again
            assert await resource.read() == expected

    async def test_missing_file_fails_connect_naming_resource_and_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope" / f"gone.{self.type_name}"
        resource = ResourceFactory.create(self.type_name, name="gone", file_path=str(missing))
        with pytest.raises(XResourceConnectionError) as info:
            await resource.connect()
        assert "'gone'" in str(info.value)
        assert self.type_name in str(info.value)
        assert str(missing) in str(info.value)
        assert resource.state.value == "failed"
        assert resource._rt is None

    async def test_operations_need_connect(self, tmp_path: Path) -> None:
        resource, _ = self.sample(tmp_path)
        with pytest.raises(XResourceStateError):
            await resource.read()
        with pytest.raises(XResourceStateError):
            resource.read_stream(10)  # checked at the call, before any iteration
        if resource.supports_write:
            with pytest.raises(XResourceStateError):
                await resource.write([])

    async def test_repr_and_metadata_show_no_secret(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FILE_CONTRACT_SECRET", "s3cret-file-value")
        resource, _ = self.sample(tmp_path)
        resource.description = "${env:FILE_CONTRACT_SECRET}"  # text, never resolved
        async with resource:
            shown = [repr(resource), str(resource), str(resource.get_metadata()), resource.model_dump_json()]
        assert not any("s3cret-file-value" in text for text in shown)
        assert "FileRuntime" not in repr(resource)  # the runtime is not a field

    # ---- reading --------------------------------------------------------------------------

    async def test_read_and_stream_agree(self, tmp_path: Path) -> None:
        resource, expected = self.sample(tmp_path)
        async with resource:
            assert await resource.read() == expected
            chunks = await collect(resource, 4)
        assert [len(c) for c in chunks] == [4, 4, 2]
        assert [row for chunk in chunks for row in chunk] == expected

    @pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10", None])
    async def test_chunk_size_must_be_a_positive_int(self, tmp_path: Path, bad: Any) -> None:
        resource, _ = self.sample(tmp_path)
        async with resource:
            with pytest.raises(ValueError, match="chunk_size"):
                resource.read_stream(bad)

    async def test_malformed_content_is_a_data_error_naming_the_file(self, tmp_path: Path) -> None:
        resource = self.malformed(tmp_path)
        with pytest.raises(XResourceDataError) as info:
            async with resource:
                await resource.read()
        assert str(resource.file_path) in str(info.value)
        assert info.value.path == str(resource.file_path)
        assert resource.label in str(info.value)
        assert not isinstance(info.value, XResourceConnectionError)  # reading it again will not help

    async def test_relative_file_path_resolves_against_base_dir(self, tmp_path: Path) -> None:
        resource, expected = self.sample(tmp_path)
        cls = type(resource)
        manifests = tmp_path / "manifests"
        manifests.mkdir()
        relative = Path("..") / resource.file_path.name
        fields = {**resource.model_dump(by_alias=True, exclude={"file_path"}), "name": "rel"}
        made = cls.model_validate({**fields, "file_path": str(relative)}, context={"base_dir": manifests})
        assert made.file_path == manifests / relative
        async with made:
            assert await made.read() == expected
        # Without a base_dir the path stays as written (relative to the working directory).
        assert cls.model_validate({"name": "rel", "file_path": "x/y"}).file_path == Path("x/y")

    async def test_metadata_and_tables(self, tmp_path: Path) -> None:
        resource, _ = self.sample(tmp_path)
        async with resource:
            info = resource.get_metadata()
            tables = await resource.list_collections_or_tables()
        assert info["file_path"] == str(resource.file_path)
        assert info["size_bytes"] == resource.file_path.stat().st_size > 0
        assert info["table"] == "people"
        assert info["family"] == "file"
        assert info["target"] == str(resource.file_path)
        assert tables == ["people"]  # the excel sample's only sheet is also called "people"

    async def test_file_removed_after_connect(self, tmp_path: Path) -> None:
        resource, _ = self.sample(tmp_path)
        async with resource:
            resource.file_path.unlink()
            assert await resource.validate_connection() is False
            with pytest.raises(XResourceConnectionError, match="read failed") as info:
                await resource.read()
            assert str(resource.file_path) in str(info.value)
            with pytest.raises(XResourceConnectionError, match="read_stream failed"):
                await collect(resource, 2)

    async def test_read_stream_memory_is_bounded_by_the_chunk(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Streaming holds a few chunks (and a hop's read-ahead), never the whole file as read() does."""
        monkeypatch.setattr(files_base, "HOP_ROWS", 64)
        resource = self.memory_sample(tmp_path)
        async with resource:
            gc.collect()
            tracemalloc.start()
            try:
                streamed = 0
                async for chunk in resource.read_stream(32):
                    streamed += len(chunk)
                chunked = tracemalloc.get_traced_memory()[1]
                tracemalloc.reset_peak()
                rows = len(await resource.read())
                whole = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert streamed == rows >= 2000
        assert chunked < whole / 2, (chunked, whole)

    async def test_breaking_out_of_a_stream_closes_the_file(self, tmp_path: Path) -> None:
        resource = self.big_sample(tmp_path)
        async with resource:
            stream = resource.read_stream(2)
            async for _chunk in stream:
                break
            assert open_fds_to(resource.file_path)  # held open between chunks
            await stream.aclose()  # type: ignore[attr-defined]
            await wait_closed(resource.file_path)

    async def test_cancelled_stream_closes_the_file(self, tmp_path: Path) -> None:
        resource = self.big_sample(tmp_path)
        async with resource:
            first = asyncio.Event()

            async def consume() -> None:
                async for _chunk in resource.read_stream(2):
                    first.set()
                    await asyncio.sleep(0)

            task = asyncio.create_task(consume())
            await asyncio.wait_for(first.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await wait_closed(resource.file_path)

    async def test_small_chunks_stream_everything_in_order(self, tmp_path: Path) -> None:
        resource = self.big_sample(tmp_path)
        async with resource:
            chunks = await collect(resource, 7)
            rows = await resource.read()
        assert all(len(chunk) == 7 for chunk in chunks[:-1])
        assert 1 <= len(chunks[-1]) <= 7
        assert [row for chunk in chunks for row in chunk] == rows

    # ---- writing --------------------------------------------------------------------------

    async def test_write_is_atomic_keeps_mode_and_leaves_no_temp_file(self, tmp_path: Path) -> None:
        resource, _ = self.sample(tmp_path)
        if not resource.supports_write:
            async with resource:
                with pytest.raises(NotImplementedError, match="write is not supported"):
                    await resource.write([{"id": 1}])
            return
        resource.file_path.chmod(0o640)
        before = resource.file_path.stat().st_ino
        async with resource:
            await resource.write([{"id": 1, "name": "one"}])
            assert [{k: str(v) for k, v in row.items()} for row in await resource.read()] == [
                {"id": "1", "name": "one"}
            ]
        after = resource.file_path.stat()
        assert after.st_ino != before  # replaced, not rewritten in place
        assert stat.S_IMODE(after.st_mode) == 0o640
        assert leftovers(tmp_path) == []

    async def test_failed_write_leaves_the_file_untouched(self, tmp_path: Path) -> None:
        resource, expected = self.sample(tmp_path)
        if not resource.supports_write:
            pytest.skip(f"{self.type_name} is read-only")
        original = resource.file_path.read_bytes()
        async with resource:
            with pytest.raises(XResourceDataError, match="cannot write"):
                await resource.write(self.unwritable())
            assert await resource.read() == expected
        assert resource.file_path.read_bytes() == original
        assert leftovers(tmp_path) == []
