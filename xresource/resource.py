"""``XResource``: the model and lifecycle every resource type shares.

A resource is a pydantic model of its manifest (the fields) plus a runtime:
the driver objects a connection needs (pool, client, tasks) live in one
slotted object per family, held in the real slot ``_rt`` (a slot is read in
nanoseconds; a pydantic private attribute in microseconds, which matters on
per-query and per-message paths). Backend modules import their driver only
inside ``_connect``, so every model, and so every JSON Schema, is available
without any optional extra installed.

Hooks the live registry uses (see docs/architecture.md):

- ``bind_manifest(origin)``: where the resource was read from;
- ``live_fields()`` and ``apply_live_update(changes)``: fields marked
  :data:`Live` change on a running instance without a reconnect;
- ``take_over(previous)``: a new version adopts what user code registered on
  the version it replaces (stream subscriptions, handlers, iterators);
- ``prepare_takeover(previous, surge=...)`` and ``begin_drain(successor)``: a
  replaced pool shrinks as its successor grows (the surge rule).
"""

from __future__ import annotations

import builtins
import copy
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, PrivateAttr

from xresource import secrets
from xresource.errors import (
    XResourceConnectionError,
    XResourceError,
    XResourceStateError,
    XResourceTimeoutError,
)
from xresource.lifecycle import Live as Live  # re-exported: backends and the registry import these here
from xresource.lifecycle import ManifestOrigin as ManifestOrigin
from xresource.lifecycle import State as State
from xresource.manifest_files import ManifestFiles
from xresource.prototype import ResourceMetadata, XObjPrototype
from xresource.safe_files import FilePolicy

# asyncio and logging are imported inside the functions that use them: `xresource validate`
# loads this module for the model only and never pays for them (docs/performance.md).
if TYPE_CHECKING:
    import asyncio
    import logging


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("xresource.resource")


NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"


class XResource(XObjPrototype, ManifestFiles):
    """Base of every resource type.

    Subclasses declare ``type: Literal["<name>"]`` and their own fields, and
    implement ``_connect``, ``_disconnect`` and ``_validate_connection``.
    """

    family: ClassVar[str] = "resource"
    """The family (``file``, ``database``, ``network``, ``stream``): selects settings defaults."""
    install_extra: ClassVar[str | None] = None
    """The pip extra that brings the driver (``pip install 'xresource[<extra>]'``)."""
    example_name: ClassVar[str | None] = None
    """A realistic resource name for this type's example manifest (docs, ``init``); ``my_<type>`` if unset."""
    cleanup_timeout: ClassVar[float] = 2.0
    """Seconds the clean-up after a failed connect may take, on top of the caller's connect timeout."""

    type: str
    """The resource type; selects the backend."""
    name: str = Field(pattern=NAME_PATTERN)
    """Unique name of the resource across the whole directory."""
    description: Annotated[str | None, Live] = None
    """What the resource is for, for people."""
    tags: Annotated[list[str], Live] = Field(default_factory=list)
    """Labels for selecting groups of resources (``registry.select(tag=...)``)."""
    connect_mode: Literal["eager", "lazy"] = Field(default="eager", alias="connect")
    """``eager`` connects at registry start; ``lazy`` on first ``get``/``lease``."""

    _state: State = PrivateAttr(default=State.NEW)
    _last_error: str | None = PrivateAttr(default=None)
    _resolved_secrets: list[str] = PrivateAttr(default_factory=list)
    _origin: ManifestOrigin | None = PrivateAttr(default=None)
    _metadata: ResourceMetadata | None = PrivateAttr(default=None)
    _lifecycle_lock: asyncio.Lock | None = PrivateAttr(default=None)
    _file_policy: FilePolicy = PrivateAttr(default_factory=FilePolicy)

    # The connection runtime, in a real slot (see the module docstring): None until
    # ``_connect`` builds it, None again after ``disconnect()``. Annotated for mypy only
    # (an annotation pydantic saw would make it a private attribute); families narrow it.
    __slots__ = ("_rt",)
    if TYPE_CHECKING:
        _rt: object | None

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._init_slots()

    def _init_slots(self) -> None:
        """Give every slot its initial value (families with slots of their own extend this)."""
        object.__setattr__(self, "_rt", None)  # a plain slot: pydantic's __setattr__ has nothing to do

    if not TYPE_CHECKING:

        def __getattr__(self, item: str) -> Any:
            # A private attribute (``self._state``) is found here. pydantic's own lookup first
            # asks the attribute's declaration whether it is a descriptor, which raises and
            # catches an AttributeError on every read (~5 us); ours are plain values.
            if item.startswith("__"):
                # An unset slot (pydantic probes ``__pydantic_private__`` before setting it):
                # no private attribute or extra field has such a name.
                raise AttributeError(item)
            try:
                private = object.__getattribute__(self, "__pydantic_private__")
            except AttributeError:
                private = None
            if private is not None and item in private:
                return private[item]
            return super().__getattr__(item)

    def __copy__(self) -> Self:
        # A copy is a new, unconnected resource with the same fields: pydantic would
        # share the private attributes (driver, tasks, locks) and leave slots unset.
        copied = super().__copy__()
        private = copied.__pydantic_private__
        if private is not None:
            for name, attribute in type(self).__private_attributes__.items():
                private[name] = attribute.get_default(call_default_factory=True)
            private["_origin"] = self._origin  # where it came from and which files it may read
            private["_file_policy"] = self._file_policy
        copied._init_slots()
        copied._copied_from(self)
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        copied = self.__copy__()  # sockets and tasks cannot be deep-copied, and need not be
        object.__setattr__(copied, "__dict__", copy.deepcopy(self.__dict__, memo))
        return copied

    def _copied_from(self, source: Self) -> None:
        """Take what a copy keeps of ``source`` beyond its fields (streams: subscriptions)."""

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

    def bind_manifest(self, origin: ManifestOrigin) -> None:
        """Record where this resource was read from (the loader and the registry call this)."""
        self._origin = origin

    @property
    def manifest_origin(self) -> ManifestOrigin | None:
        return self._origin

    @property
    def manifest_path(self) -> Path | None:
        return self._origin.path if self._origin is not None else None

    @property
    def manifest_line(self) -> int | None:
        return self._origin.line if self._origin is not None else None

    @property
    def fingerprint(self) -> str | None:
        """What decides "changed" on reload (set by the loader); internal, never shown."""
        return self._origin.fingerprint if self._origin is not None else None

    @property
    def manifest_hash(self) -> str | None:
        """Hash of the manifest's fields as written; safe to show (no secret file content)."""
        return self._origin.manifest_hash if self._origin is not None else None

    # ---- live updates and hand-over -----------------------------------------------------------

    @classmethod
    def live_fields(cls) -> frozenset[str]:
        """Fields marked :data:`Live`: a change to only these is applied without a reconnect."""
        return _live_fields(cls)

    async def apply_live_update(self, changes: dict[str, Any]) -> None:
        """Set live fields on this (possibly running) instance.

        Backends whose driver holds a copy of such a field (default headers in
        an HTTP session, say) extend this to push the new value into it.
        """
        unknown = set(changes) - self.live_fields()
        if unknown:
            raise ValueError(f"{self.label}: not live-updatable: {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            setattr(self, name, value)
        self._metadata = None

    async def take_over(self, previous: XResource) -> None:
        """Adopt what user code registered on ``previous``, the version this one replaces.

        The registry calls this on a newly connected instance before the swap;
        raising rejects the new version and ``previous`` keeps running. Streams
        move handlers, subscriptions and open iterators (make before break);
        other families hold nothing of the user's, so the default does nothing.
        """

    def prepare_takeover(self, previous: XResource, *, surge: int) -> None:
        """Called by the registry before this new version connects to replace ``previous``.

        Pooled databases then open a small pool (at most ``surge`` connections, the
        ``[registry] reload_surge`` setting) that grows only as ``previous`` gives its
        connections back after the swap (docs/hot-reload.md, "the surge rule"). Other
        families open what they always open, so the default does nothing.
        """

    async def begin_drain(self, successor: XResource | None) -> None:
        """Called by the registry on a replaced or removed version right after the swap.

        The version keeps serving what still uses it (open leases, code that took it
        before the swap) until ``disconnect()``; pooled databases close their idle
        connections now and each one given back from then on, so that ``successor``
        may open as many. Default: nothing.
        """

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
            import asyncio

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
                try:
                    await self._clean_up_failed_connect()
                finally:
                    self._rt = None
                raise
            self._state = State.READY
            self._last_error = None

    async def _clean_up_failed_connect(self) -> None:
        """Close what a failed ``_connect`` left half open, within ``cleanup_timeout``; log what fails.

        It runs inside the caller's timeout (the registry's ``connect_timeout``), so a
        slow clean-up may stretch a connect by ``cleanup_timeout`` at most.
        """
        import asyncio

        try:
            async with asyncio.timeout(self.cleanup_timeout):
                await self._disconnect()
        except TimeoutError:
            _log().warning(
                "%s: the clean-up after a failed connect did not finish within %gs and was abandoned",
                self.label,
                self.cleanup_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - the connect's own error is what the caller gets
            _log().warning(
                "%s: the clean-up after a failed connect failed: %s",
                self.label,
                self.scrub(str(exc) or type(exc).__name__),
            )

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
                self._rt = None
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
        """Open the driver's connection or pool and keep what it needs in ``self._rt`` (backends override)."""

    async def _disconnect(self) -> None:
        """Close what ``_connect`` opened; must tolerate a half-open state (``connect`` and
        ``disconnect`` set ``self._rt`` to None afterwards)."""

    async def _validate_connection(self) -> bool:
        return True

    def require_ready(self) -> None:
        if self._state is not State.READY:
            raise self._not_connected()

    def _not_connected(self) -> XResourceStateError:
        """The error for an operation that needs a connected resource."""
        return XResourceStateError(f"{self.label} is not connected (state: {self.state.value})")

    def resolve(self, value: str) -> str:
        """Resolve secret references in ``value``; remember the secrets for scrubbing."""
        return secrets.resolve(
            value, owner=self.label, found=self._resolved_secrets, policy=self._file_policy, origin=self
        )

    def bind_file_policy(self, policy: FilePolicy) -> None:
        """Set the allowed roots and secret size cap (the loader binds ``[registry]`` settings)."""
        self._file_policy = policy

    def remember_secrets(self, *values: str) -> None:
        """Also scrub these values (encodings of a resolved secret, say) from messages."""
        found = self._resolved_secrets
        for value in values:
            if value and value not in found:
                found.append(value)

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


@functools.cache
def _live_fields(cls: type[XResource]) -> frozenset[str]:
    return frozenset(name for name, info in cls.model_fields.items() if any(m is Live for m in info.metadata))
