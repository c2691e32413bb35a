"""``FileResource``: what the csv, excel, json and yaml backends share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationInfo, field_validator

from xresource.errors import XResourceConnectionError
from xresource.resource import XResource

Row = dict[str, Any]


class FileResource(XResource):
    """A resource backed by one local file."""

    family: ClassVar[str] = "file"

    file_path: Path
    """Path of the data file; a relative path resolves against the manifest's folder."""
    encoding: str = "utf-8"
    """Text encoding of the file."""

    @field_validator("file_path", mode="after")
    @classmethod
    def _resolve_relative(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
        return value

    def target(self) -> str:
        return str(self.file_path)

    @property
    def table_name(self) -> str:
        return self.file_path.stem

    async def _connect(self) -> None:
        if not self.file_path.is_file():
            raise XResourceConnectionError(f"{self.label}: file {str(self.file_path)!r} does not exist")

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

    async def read(self) -> Any:
        """Read the whole file (rows for tabular formats, the document otherwise)."""
        raise NotImplementedError

    def read_stream(self, chunk_size: int = 1000) -> AsyncIterator[list[Any]]:
        """Yield chunks of at most ``chunk_size`` rows; memory is bounded by the chunk."""
        raise NotImplementedError

    async def write(self, rows: Sequence[Any] | Any) -> None:
        """Replace the file's content (where the format allows it)."""
        raise NotImplementedError(f"{self.label}: write is not supported")
