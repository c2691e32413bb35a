"""The aiohttp application: ``/healthz``, ``/readyz``, ``/resources``, ``/metrics``, ``/reload``."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from xresource.registry import Registry
from xresource.server.metrics import RegistryCollector

REGISTRY_KEY = web.AppKey("registry", Registry)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)


def create_app(registry: Registry) -> web.Application:
    app = web.Application()
    app[REGISTRY_KEY] = registry
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(RegistryCollector(registry))
    app[METRICS_KEY] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/resources", resources)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_post("/reload", reload_view)
    return app


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok", "time": time.time()})


async def readyz(request: web.Request) -> web.Response:
    """200 when every resource is ready (lazy ones that never connected count as ready)
    and, with ``ready_requires_applied``, no change is pending."""
    registry = request.app[REGISTRY_KEY]
    not_ready = {
        name: {"state": s.state, "error": s.error}
        for name, s in registry.status().items()
        if s.state != "ready" and not (s.connect_mode == "lazy" and s.state == "new")
    }
    # Desired versions that are not running (a change that failed to apply, a failed reload):
    # always shown; they fail readiness only with [registry] ready_requires_applied.
    pending = registry.pending
    if registry.settings.registry.ready_requires_applied:
        for name, reason in pending.items():
            not_ready.setdefault(name, {"state": "pending", "error": reason})
    body = {
        "ready": not not_ready,
        "not_ready": not_ready,
        "pending": pending,
        "reload_error": registry.last_reload_error,
    }
    return web.json_response(body, status=200 if not not_ready else 503)


async def resources(request: web.Request) -> web.Response:
    """Every resource: name, type, state, generation, manifest path, last error, metadata."""
    registry = request.app[REGISTRY_KEY]
    data = [s.as_dict() for s in registry.status().values()]
    return web.json_response({"resources": data, "count": len(data)}, dumps=_dumps)


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def reload_view(request: web.Request) -> web.Response:
    """Reload now (what SIGHUP does) and return what changed."""
    result = await request.app[REGISTRY_KEY].reload()
    return web.json_response(
        {
            "outcome": result.outcome,
            "added": result.added,
            "replaced": result.replaced,
            "updated": result.updated,
            "removed": result.removed,
            "rejected": result.rejected,
            "problems": [str(p) for p in result.problems],
        }
    )


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, default=str)
