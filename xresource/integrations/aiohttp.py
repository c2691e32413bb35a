"""aiohttp: start and stop a registry with the application, and mount its health routes.

.. code-block:: python

    from aiohttp import web
    from xresource import Registry
    from xresource.integrations.aiohttp import REGISTRY_KEY, add_routes, registry_context

    registry = Registry("resources.d", watch=True)
    app = web.Application()
    app.cleanup_ctx.append(registry_context(registry))
    add_routes(app, registry, prefix="/ops")  # /ops/healthz, /ops/readyz, /ops/metrics, ...

    async def users(request: web.Request) -> web.Response:
        db = request.app[REGISTRY_KEY].get("user_db")
        return web.json_response(await db.fetch("SELECT id, name FROM users"))
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from xresource.registry import Registry
from xresource.server.app import PROBES_KEY
from xresource.server.app import add_routes as _add_routes
from xresource.server.lifecycle import run_registry
from xresource.server.probes import RegistryProbes
from xresource.settings import ServerSettings

__all__ = ["REGISTRY_KEY", "add_routes", "registry_context"]

log = logging.getLogger("xresource.integrations")

REGISTRY_KEY = web.AppKey("xresource_registry", Registry)
"""Where ``registry_context`` puts the registry: ``request.app[REGISTRY_KEY]``."""


def registry_context(
    registry: Registry, *, background: bool = False
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry: start ``registry`` when the app starts, stop it when the app stops.

    By default the app starts serving once the registry has started (every eager resource
    connected or marked failed), so handlers can call ``registry.get()`` at once. With
    ``background=True`` the app listens at once and the registry starts meanwhile:
    ``/readyz`` answers 503 ``starting`` until it has. An invalid manifest folder raises
    ``ManifestError`` from app start-up; in the background it is logged and ``/readyz``
    answers 503 ``failed``.
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        app[REGISTRY_KEY] = registry
        async with run_registry(registry, app.get(PROBES_KEY), background=background):
            yield

    return context


def add_routes(
    app: web.Application,
    registry: Registry,
    *,
    prefix: str = "",
    settings: ServerSettings | None = None,
    status_page: bool = True,
) -> RegistryProbes:
    """Add ``/healthz``, ``/readyz``, ``/resources``, ``/resources/{name}``, ``/metrics``,
    ``POST /reload`` and, with ``status_page``, the operator's status page at ``/`` (live over
    Server-Sent Events), all under ``prefix`` (``""`` or like ``"/ops"``).

    ``settings`` are the ``[server]`` settings (``registry.settings.server`` when omitted):
    its ``allowed_hosts`` are the names besides IP addresses and ``localhost`` that the
    routes answer for (``/healthz`` answers any), its ``reload_token`` guards ``POST /reload``.
    Returns the probes, whose ``readiness()`` and ``metrics()`` can also be called directly.
    """
    server = settings if settings is not None else registry.settings.server
    return _add_routes(
        app, registry, prefix=prefix, settings=server, bound="0.0.0.0", status_page=status_page
    )
