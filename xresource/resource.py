"""``XResource``: the model and lifecycle every resource type shares.

A resource is a pydantic model of its manifest (the fields) plus runtime state
held in private attributes (pools, clients, the connection state). Backend
modules import their driver only inside ``_connect``, so every model, and so
every JSON Schema, is available without any optional extra installed.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr

from xresource import safe_files, secrets
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceStateError,
    XResourceTimeoutError,
)
from xresource.prototype import ResourceMetadata, XObjPrototype
from xresource.safe_files import FilePolicy, RefusedFileError

NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"


class State(enum.StrEnum):
    """Connection states, shared by resources and the registry's status."""

    NEW = "new"
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    DRAINING = "draining"
    CLOSED = "closed"


class XResource(XObjPrototype):
    """Base of every resource type.

    Subclasses declare ``type: Literal["<name>"]`` and their own fields, and
    implement ``_connect``, ``_disconnect`` and ``_validate_connection``.
    """

    family: ClassVar[str] = "resource"
    install_extra: ClassVar[str | None] = None

    type: str
    """The resource type; selects the backend."""
    name: str = Field(pattern=NAME_PATTERN)
    """Unique name of the resource across the whole directory."""
    description: str | None = None
    """What the resource is for, for people."""
    tags: list[str] = Field(default_factory=list)
    """Labels for selecting groups of resources (``registry.select(tag=...)``)."""
    connect_mode: Literal["eager", "lazy"] = Field(default="eager", alias="connect")
    """``eager`` connects at registry start; ``lazy`` on first ``get``/``lease``."""

    _state: State = PrivateAttr(default=State.NEW)
    _last_error: str | None = PrivateAttr(default=None)
    _resolved_secrets: list[str] = PrivateAttr(default_factory=list)
    _manifest_path: Path | None = PrivateAttr(default=None)
    _manifest_line: int | None = PrivateAttr(default=None)
    _fingerprint: str | None = PrivateAttr(default=None)
    _manifest_hash: str | None = PrivateAttr(default=None)
    _metadata: ResourceMetadata | None = PrivateAttr(default=None)
    _lifecycle_lock: asyncio.Lock | None = PrivateAttr(default=None)
    _file_policy: FilePolicy = PrivateAttr(default_factory=FilePolicy)

    # ---- identity -------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """``"postgresql resource 'orders'"``: how messages name this resource."""
        return f"{self.type} resource {self.name!r}"

    def target(self) -> str:
        """Where the resource points (host:port, file, URL), never with a secret."""
        return ""

    @property
    def state(self) -> State:
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def manifest_path(self) -> Path | None:
        return self._manifest_path

    @property
    def fingerprint(self) -> str | None:
        """Content hash of the manifest and the secret files it references (set by the loader)."""
        return self._fingerprint

    @property
    def manifest_hash(self) -> str | None:
        """Hash of the manifest's fields as written; safe to show (no secret file content)."""
        return self._manifest_hash

    @property
    def metadata(self) -> ResourceMetadata:
        if self._metadata is None:
            self._metadata = ResourceMetadata(
                name=self.name, description=self.description, tags=list(self.tags)
            )
        return self._metadata

    def get_metadata(self) -> dict[str, Any]:
        """Describe the resource for people and tools; never contains a secret."""
        info: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "family": self.family,
            "description": self.description,
            "tags": list(self.tags),
            "target": self.target(),
            "state": self._state.value,
        }
        info.update(self._metadata_details())
        return info

    def _metadata_details(self) -> dict[str, Any]:
        return {}

    def referenced_files(self) -> set[Path]:
        """Secret files named by ``${file:...}`` references in this manifest."""
        return secrets.referenced_files(self.model_dump(by_alias=True).values())

    # ---- lifecycle ------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        if self._lifecycle_lock is None:
            self._lifecycle_lock = asyncio.Lock()
        return self._lifecycle_lock

    async def connect(self) -> None:
        """Open the connection or pool and verify it; a no-op when already connected."""
        async with self._lock():
            if self._state is State.READY:
                return
            self._state = State.CONNECTING
            self._resolved_secrets = []
            try:
                async with self.translate_errors("connect"):
                    await self._connect()
            except BaseException as exc:
                self._state = State.FAILED
                self._last_error = str(exc) if isinstance(exc, XResourceError) else type(exc).__name__
                with contextlib.suppress(Exception):  # best-effort cleanup of a half-open client
                    await self._disconnect()
                raise
            self._state = State.READY
            self._last_error = None

    async def disconnect(self) -> None:
        """Close the connection or pool; safe to call twice."""
        async with self._lock():
            if self._state in (State.CLOSED, State.NEW):
                self._state = State.CLOSED
                return
            try:
                async with self.translate_errors("disconnect"):
                    await self._disconnect()
            finally:
                self._state = State.CLOSED

    async def validate_connection(self) -> bool:
        """Make one real round trip; ``True`` when the backend answers."""
        if self._state is not State.READY:
            return False
        try:
            async with self.translate_errors("validate_connection"):
                return await self._validate_connection()
        except XResourceError as exc:
            self._last_error = str(exc)
            return False

    async def list_collections_or_tables(self) -> list[str]:
        """Names of the tables, collections, topics or sheets behind the resource."""
        return []

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # ---- for backends ---------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the driver's connection or pool (backends override)."""

    async def _disconnect(self) -> None:
        """Close what ``_connect`` opened; must tolerate a half-open state."""

    async def _validate_connection(self) -> bool:
        return True

    def require_ready(self) -> None:
        if self._state is not State.READY:
            raise XResourceStateError(f"{self.label} is not connected (state: {self._state.value})")

    def resolve(self, value: str) -> str:
        """Resolve secret references in ``value``; remember the secrets for scrubbing."""
        return secrets.resolve(
            value, owner=self.label, found=self._resolved_secrets, policy=self._file_policy, origin=self
        )

    def bind_file_policy(self, policy: FilePolicy) -> None:
        """Set the allowed roots and secret size cap (the loader binds ``[registry]`` settings)."""
        self._file_policy = policy

    def open_checked(self, path: Path | str, what: str) -> BinaryIO:
        """Open a file this manifest names (field ``what``) for reading, checked at this open.

        Only a regular file within the allowed roots is opened (see ``xresource.safe_files``);
        otherwise ``RefusedFileError`` (an ``OSError``, translated like any unreadable file)
        names the field, the path and the reason.
        """
        try:
            return safe_files.open_checked(path, self._file_policy)
        except RefusedFileError as exc:
            raise RefusedFileError(exc.path, exc.reason, what) from None

    def read_checked(self, path: Path | str, what: str) -> bytes:
        """The whole of a small file this manifest names (a schema, a CA bundle), checked as above."""
        try:
            return safe_files.read_checked(path, self._file_policy, safe_files.DEFAULT_MAX_SMALL_FILE_BYTES)
        except RefusedFileError as exc:
            raise RefusedFileError(exc.path, exc.reason, what) from None

    def read_ca_file(self, ca_file: str | None) -> str | bytes | None:
        """``ca_file`` read through the checked open, as ``SSLContext(cadata=...)`` takes it.

        References are resolved; a relative path is relative to the manifest's folder.
        """
        if not ca_file:
            return None
        path = Path(self.resolve(ca_file)).expanduser()
        if not path.is_absolute() and self.manifest_path is not None:
            path = self.manifest_path.parent / path
        return safe_files.ca_data(self.read_checked(path, "ca_file"))

    def check_within_roots(self, path: Path | str, what: str) -> None:
        """Refuse a path outside the allowed roots (for writes, and drivers that open paths themselves)."""
        why = self._file_policy.outside_roots(path)
        if why is not None:
            raise RefusedFileError(path, why, what)

    def scrub(self, text: str) -> str:
        """Remove every secret this resource resolved from ``text``."""
        return secrets.scrub(text, self._resolved_secrets)

    def error_class_for(self, exc: BaseException) -> builtins.type[XResourceError] | None:
        """Map a driver exception to our tree (backends extend; ``None`` = default)."""
        return None

    def translate(self, exc: BaseException, operation: str) -> XResourceError:
        """Turn a driver exception into an ``XResourceError`` that names this resource."""
        cls: builtins.type[XResourceError] | None = self.error_class_for(exc)
        if cls is None:
            cls = XResourceTimeoutError if isinstance(exc, TimeoutError) else XResourceConnectionError
        detail = self.scrub(str(exc).strip() or type(exc).__name__)
        where = f" at {self.target()}" if self.target() else ""
        return cls(f"{self.label}{where}: {operation} failed: {detail}")

    @asynccontextmanager
    async def translate_errors(self, operation: str) -> AsyncIterator[None]:
        """Re-raise driver exceptions as ``XResourceError`` with the original chained."""
        try:
            yield
        except XResourceError:
            raise
        except Exception as exc:
            raise self.translate(exc, operation) from exc
