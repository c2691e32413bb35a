"""Helpers for testing code that uses a registry (docs/testing.md).

The pytest plugin (:mod:`xresource.testing.pytest_plugin`, loaded through the ``pytest11``
entry point) gives the fixtures ``make_registry``, ``xresource_registry`` and
``xresource_override`` on top of ``Registry.from_manifests`` and ``Registry.override``.
"""

from __future__ import annotations

from typing import Any

from xresource.settings import Settings, load_settings

__all__ = ["TEST_REGISTRY_SETTINGS", "settings_for_tests"]

TEST_REGISTRY_SETTINGS: dict[str, Any] = {
    "rescan_interval": 0,
    "health_interval": 0,
    "connect_timeout": 5.0,
    "drain_timeout": 5.0,
    "close_grace": 0.0,
    "retry_initial": 0.05,
    "retry_max": 0.5,
}
"""What a test registry changes in ``[registry]``: no background rescans or health checks
(a test sees what it does, not a timer), short waits, fast retries."""


def settings_for_tests(settings: Settings | None = None, **registry: Any) -> Settings:
    """``settings`` (default: the usual layers, ``settings.toml`` and ``XRESOURCE_*``) with the
    ``[registry]`` values of :data:`TEST_REGISTRY_SETTINGS`, then ``registry`` on top."""
    base = settings if settings is not None else load_settings()
    values = base.registry.model_dump() | TEST_REGISTRY_SETTINGS | registry
    return base.model_copy(update={"registry": type(base.registry).model_validate(values)})
