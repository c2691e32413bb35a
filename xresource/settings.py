"""Settings, layered with Dynaconf and validated by pydantic (see docs/architecture.md).

Layers, later wins: built-in defaults (the models below), then ``settings.toml``
(from ``--settings`` or ``XRESOURCE_SETTINGS_FILE``), then environment
variables with the prefix ``XRESOURCE_`` (nested keys with ``__``, e.g.
``XRESOURCE_REGISTRY__DRAIN_TIMEOUT=5``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from xresource.errors import ManifestError, Problem, XResourceError
from xresource.prototype import XObjPrototype
from xresource.secrets import REFERENCE_RE

SETTINGS_ENV = "XRESOURCE_SETTINGS_FILE"
ENV_PREFIX = "XRESOURCE"


class RegistrySettings(XObjPrototype):
    """The ``[registry]`` section."""

    watch_debounce_ms: int = Field(default=50, ge=0, le=60_000)
    """How long the watcher collects events before a rescan (watchfiles' own default, 1600 ms, is too slow)."""
    watch_step_ms: int = Field(default=20, ge=1, le=10_000)
    """How often the watcher checks for new events while collecting."""
    rescan_interval: float = Field(default=30.0, ge=0)
    """Seconds between safety-net rescans for events a watcher missed (0 disables)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds a resource may take to connect before it is marked failed."""
    drain_timeout: float = Field(default=30.0, ge=0)
    """Seconds a replaced or removed resource waits for open leases before it is closed anyway."""
    close_grace: float = Field(default=1.0, ge=0)
    """Seconds a replaced instance keeps serving code that took it with ``get()`` before the swap."""
    health_interval: float = Field(default=10.0, ge=0)
    """Seconds between health checks (one real round trip) of ready resources (0 disables)."""
    retry_initial: float = Field(default=1.0, gt=0)
    """First delay before a failed resource is retried in the background."""
    retry_max: float = Field(default=30.0, gt=0)
    """Longest delay between background retries."""
    allowed_roots: list[Path] = Field(default_factory=list)
    """If set, file resources and ${file:...} secrets must lie under one of these folders."""
    audit_log: bool = False
    """Write structured audit lines (connect, disconnect, reload, lease) to the ``xresource.audit`` logger."""
    max_manifest_bytes: int = Field(default=1_000_000, gt=0)
    """Larger manifest files are rejected unread."""
    max_secret_bytes: int = Field(default=65_536, gt=0)
    """Larger ``${file:...}`` secret files are refused unread (secrets are small; devices and logs are not)."""
    settle_ms: int = Field(default=100, ge=0, le=60_000)
    """A manifest modified within this many milliseconds is still being written: a reload waits
    until its size and modification time have been stable this long (0 applies files at once)."""
    ready_requires_applied: bool = False
    """``/readyz`` fails while any resource's desired version is not the one running (``pending``)."""
    reload_surge: int = Field(default=1, ge=1, le=1_000)
    """Connections a replaced PostgreSQL or MySQL resource may hold beyond what the version it replaces
    holds: the new version opens this many at most to prove it works, then grows as the old one's
    connections close (at least 1: the new version connects before the swap)."""
    reload_jitter: float = Field(default=0.0, ge=0, le=3_600)
    """Seconds: a change the watcher sees is applied after a random delay up to this long, so the
    replicas of a fleet do not all reload at once (0 applies at once; ``reload()``, SIGHUP,
    ``POST /reload`` and ``stop()`` are never delayed)."""


class ServerSettings(XObjPrototype):
    """The ``[server]`` section: limits and protections of the HTTP routes (``xresource serve`` and the mounted ones)."""

    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names a request may name in its ``Host`` header, besides the bound address (and ``localhost`` when bound to loopback or to all interfaces); ``.example.com`` also allows its subdomains, ``*`` turns the check off."""
    reload_token: str | None = None
    """A token ``POST /reload`` must carry as ``Authorization: Bearer <token>``, written as a reference (``${env:NAME}`` or ``${file:/path}``); unset: no token is asked."""
    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a new connection has to send its first complete request header; then it is closed."""
    keepalive_timeout: float = Field(default=15.0, gt=0)
    """Seconds an idle keep-alive connection stays open between requests."""
    max_connections: int = Field(default=100, ge=1, le=100_000)
    """Open connections at most (for a moment, one accept batch of up to ``backlog`` more); at the cap a connection still waiting for its first header is closed to make room, or the new one is refused."""
    backlog: int = Field(default=128, ge=1)
    """Connections the kernel queues before they are accepted."""
    max_line_size: int = Field(default=8190, ge=256)
    """Longest request line or header line, in bytes (a longer one is answered 400)."""
    max_field_size: int = Field(default=8190, ge=256)
    """Longest header value, in bytes."""
    shutdown_timeout: float = Field(default=2.0, ge=0)
    """Seconds open requests get to finish when ``serve`` stops, before resources are closed."""

    @field_validator("reload_token")
    @classmethod
    def _token_is_a_reference(cls, value: str | None) -> str | None:
        if value is not None and not REFERENCE_RE.fullmatch(value.strip()):
            raise ValueError(
                "write the token as a reference, ${env:NAME} or ${file:/run/secrets/name}, "
                "not literally (settings files are often committed)"
            )
        return value


class StreamSettings(XObjPrototype):
    """The ``[streams]`` section: defaults for every stream type's buffers."""

    queue_size: int = Field(default=1000, ge=1)
    overflow: Literal["block", "drop_oldest"] = "block"


class Settings(XObjPrototype):
    """All settings; ``resources`` maps a type name to defaults for its fields."""

    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    resources: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _known_types(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from xresource.factory import ResourceFactory

        known = set(ResourceFactory.known_types())
        for type_name, defaults in value.items():
            if type_name not in known:
                raise ValueError(f"[resources.{type_name}]: unknown resource type {type_name!r}")
            fields = ResourceFactory.get_class(type_name).model_fields
            names = set(fields) | {f.alias for f in fields.values() if f.alias}
            unknown = sorted(set(defaults) - names)
            if unknown:
                raise ValueError(f"[resources.{type_name}]: unknown field(s) {', '.join(unknown)}")
            for forbidden in ("name", "type"):
                if forbidden in defaults:
                    raise ValueError(f"[resources.{type_name}]: {forbidden!r} cannot have a default")
        return value

    def defaults_for(self, type_name: str) -> dict[str, Any]:
        """Field defaults for ``type_name``: the ``[streams]`` section, then ``[resources.<type>]``."""
        merged: dict[str, Any] = {}
        if _is_stream(type_name):
            merged.update(self.streams.model_dump())
        merged.update(self.resources.get(type_name, {}))
        return merged


def _is_stream(type_name: str) -> bool:
    """Whether ``type_name``'s class is of the stream family (built-in or third-party alike)."""
    from xresource.factory import ResourceFactory

    try:
        return ResourceFactory.get_class(type_name).family == "stream"
    except XResourceError:  # an unknown or broken type has no family defaults; validation says why
        return False


def load_settings(path: str | Path | None = None, *, environ: bool = True) -> Settings:
    """Read and validate the layered settings; raise ``ManifestError`` naming the file on error."""
    chosen = path if path is not None else os.environ.get(SETTINGS_ENV)
    if not chosen and not (environ and _settings_in_environment()):
        return built_in_settings()  # nothing to layer: skip Dynaconf's import (a third of a CLI start-up)
    from dynaconf import Dynaconf

    files: list[str] = []
    if chosen:
        settings_path = Path(chosen)
        if not settings_path.is_file():
            raise ManifestError([Problem(str(settings_path), None, None, "settings file does not exist")])
        files.append(str(settings_path))
    raw = Dynaconf(
        envvar_prefix=ENV_PREFIX if environ else False,
        settings_files=files,
        environments=False,
        load_dotenv=False,
        merge_enabled=True,
        core_loaders=["TOML"],
    )
    data = {key.lower(): value for key, value in raw.as_dict().items()}
    data.pop("settings_file", None)
    data = {k: v for k, v in data.items() if k in Settings.model_fields}
    try:
        return Settings.model_validate(_lower_keys(data))
    except ValidationError as exc:
        where = files[0] if files else "XRESOURCE_* environment"
        raise ManifestError(
            Problem(where, None, None, err["msg"], field=".".join(str(p) for p in err["loc"]))
            for err in exc.errors()
        ) from None


_NOT_SETTINGS = {SETTINGS_ENV, "XRESOURCE_DEBUG", "XRESOURCE_REQUIRE_SERVICES"}


def _settings_in_environment() -> bool:
    return any(k.startswith(f"{ENV_PREFIX}_") and k not in _NOT_SETTINGS for k in os.environ)


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    return value


def built_in_settings() -> Settings:
    """``Settings()``, built without validating: the defaults are the models' own constants.

    Pydantic does not validate defaults either, so the result equals ``Settings()``; what it
    skips is building four validators, a tenth of a cold ``xresource validate`` (the first
    assignment or ``model_validate`` still builds them).
    """
    return Settings.model_construct(
        registry=RegistrySettings.model_construct(),
        server=ServerSettings.model_construct(),
        streams=StreamSettings.model_construct(),
        _fields_set=set(),
    )


_default: Settings | None = None


def default_settings() -> Settings:
    """Built-in defaults only (no file, no environment); cached."""
    global _default
    if _default is None:
        _default = built_in_settings()
    return _default
