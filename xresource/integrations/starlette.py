"""Starlette and FastAPI: a lifespan that runs a registry, dependencies, and the health routes.

.. code-block:: python

    from typing import Annotated, Any

    from fastapi import Depends, FastAPI
    from xresource import Registry
    from xresource.integrations.starlette import add_routes, lease, registry_lifespan

    registry = Registry("resources.d", watch=True)
    app = FastAPI(lifespan=registry_lifespan(registry))
    add_routes(app, registry, prefix="/ops")  # /ops/healthz, /ops/readyz, /ops/metrics, ...

    @app.get("/users")
    async def users(db: Annotated[Any, Depends(lease("user_db"))]):
        return [dict(r) for r in await db.fetch("SELECT id, name FROM users")]

Needs ``pip install 'xresource[starlette]'`` (FastAPI brings Starlette too).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from xresource._optional import require

require("starlette", "starlette")

from starlette.requests import Request  # noqa: E402 - after the friendly check above
from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import BaseRoute, Route, Router  # noqa: E402

from xresource.registry import Registry, ReloadResult  # noqa: E402
from xresource.server.coalesce import Coalescer  # noqa: E402
from xresource.server.guard import Protection, Refusal  # noqa: E402
from xresource.server.lifecycle import run_registry  # noqa: E402
from xresource.server.probes import (  # noqa: E402
    METRICS_CONTENT_TYPE,
    Answer,
    RegistryProbes,
    clean_prefix,
    reload_answer,
)
from xresource.server.status.history import StatusHistory  # noqa: E402
from xresource.server.status.pages import (  # noqa: E402
    SECURITY_HEADERS,
    STATIC_TYPES,
    fragments_json,
    page_html,
    static_file,
)
from xresource.server.status.stream import HEADERS, StreamLimits, status_events  # noqa: E402
from xresource.settings import ServerSettings  # noqa: E402

__all__ = ["add_routes", "get_registry", "lease", "registry_lifespan", "resource", "routes"]

log = logging.getLogger("xresource.integrations")

STATE_REGISTRY = "xresource_registry"
STATE_PROBES = "xresource_probes"

Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]


def registry_lifespan(registry: Registry, *, background: bool = False) -> Lifespan:
    """A lifespan (``Starlette(lifespan=...)``, ``FastAPI(lifespan=...)``) that starts ``registry``
    with the app and stops it after the last request.

    The registry is put in the lifespan state (``request.state.xresource_registry``) and on
    ``app.state``. ``background=True`` starts serving at once (``/readyz`` says ``starting``
    until the registry has started). To combine it with a lifespan of your own, enter it
    inside yours: ``async with registry_lifespan(registry)(app) as state: ...``.
    """

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        state = getattr(app, "state", None)
        if state is not None:
            setattr(state, STATE_REGISTRY, registry)
        probes: RegistryProbes | None = getattr(state, STATE_PROBES, None)
        async with run_registry(registry, probes, background=background):
            yield {STATE_REGISTRY: registry}

    return lifespan


def get_registry(request: Request) -> Registry:
    """The registry the lifespan runs (from the lifespan state, else ``app.state``)."""
    found = getattr(request.state, STATE_REGISTRY, None) or getattr(request.app.state, STATE_REGISTRY, None)
    if not isinstance(found, Registry):
        raise RuntimeError("no registry on this app: pass lifespan=registry_lifespan(registry) to the app")
    return found


def resource(name: str) -> Callable[[Request], Any]:
    """A FastAPI dependency giving the ready resource ``name`` (``registry.get(name)``)."""

    def dependency(request: Request) -> Any:
        return get_registry(request).get(name)

    return dependency


def lease(name: str) -> Callable[[Request], AsyncIterator[Any]]:
    """A FastAPI dependency holding a lease on ``name`` for the request: a reload that replaces
    the resource meanwhile waits for the request before closing the old instance."""

    async def dependency(request: Request) -> AsyncIterator[Any]:
        async with get_registry(request).lease(name) as held:
            yield held

    return dependency


def routes(
    registry: Registry,
    *,
    prefix: str = "",
    settings: ServerSettings | None = None,
    probes: RegistryProbes | None = None,
    status_page: bool = True,
) -> list[BaseRoute]:
    """The routes (``/healthz``, ``/readyz``, ``/resources``, ``/resources/{name}``, ``/metrics``,
    ``POST /reload``, and with ``status_page`` the operator's page at ``/``) under ``prefix``,
    for ``Starlette(routes=[*routes(registry), ...])``.

    The page's charts are sampled while someone has it open (``xresource serve`` and the
    aiohttp mount also sample in the background)."""
    prefix = clean_prefix(prefix)
    probes = probes if probes is not None else RegistryProbes(registry)
    server = settings if settings is not None else registry.settings.server
    protection = Protection.from_settings(server, "0.0.0.0")
    reloads: Coalescer[ReloadResult] = Coalescer(registry.reload)

    def checked(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            refusal = protection.host_refusal(request.headers.get("host"))
            if refusal is not None:
                return _refused(refusal)
            response: Response = await handler(request)
            return response

        return guarded

    async def healthz(request: Request) -> Response:
        return _respond(probes.liveness())

    async def readyz(request: Request) -> Response:
        return _respond(probes.readiness())

    async def resources(request: Request) -> Response:
        return _respond(probes.resources())

    async def one_resource(request: Request) -> Response:
        return _respond(probes.resource(request.path_params["name"]))

    async def metrics(request: Request) -> Response:
        return Response(probes.metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def reload(request: Request) -> Response:
        refusal = protection.reload_refusal(request.headers)
        if refusal is not None:
            return _refused(refusal)
        return _respond(reload_answer(await reloads.run()))

    found: list[BaseRoute] = [
        Route(prefix + "/healthz", healthz, methods=["GET"]),
        Route(prefix + "/readyz", checked(readyz), methods=["GET"]),
        Route(prefix + "/resources", checked(resources), methods=["GET"]),
        Route(prefix + "/resources/{name}", checked(one_resource), methods=["GET"]),
        Route(prefix + "/metrics", checked(metrics), methods=["GET"]),
        Route(prefix + "/reload", checked(reload), methods=["POST"]),
    ]
    if status_page:
        found += _status_routes(registry, prefix, checked)
    return found


def _status_routes(
    registry: Registry, prefix: str, checked: Callable[[Callable[[Request], Any]], Callable[[Request], Any]]
) -> list[BaseRoute]:
    history = StatusHistory(registry)
    limits = StreamLimits(lifetime=60.0)  # uvicorn waits for open streams when it stops

    async def page(request: Request) -> Response:
        html = page_html(registry, history, prefix, dict(request.query_params))
        return Response(html, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def fragments(request: Request) -> Response:
        body = fragments_json(registry, history, prefix)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["file"]
        data = static_file(name)
        if data is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return Response(data, media_type=STATIC_TYPES[name], headers=headers)

    async def events(request: Request) -> Response:
        if limits.full():
            return JSONResponse({"error": "too many open status streams"}, status_code=503)
        return StreamingResponse(status_events(registry, history, prefix, limits), headers=HEADERS)

    pages: list[BaseRoute] = [Route(prefix + "/", checked(page), methods=["GET"])]
    if prefix:
        pages.append(Route(prefix, checked(page), methods=["GET"]))
    return [
        *pages,
        Route(prefix + "/status/fragments", checked(fragments), methods=["GET"]),
        Route(prefix + "/status/events", checked(events), methods=["GET"]),
        Route(prefix + "/status/static/{file}", checked(static), methods=["GET"]),
    ]


def add_routes(
    app: Any,
    registry: Registry,
    *,
    prefix: str = "",
    settings: ServerSettings | None = None,
    status_page: bool = True,
) -> RegistryProbes:
    """Add :func:`routes` to a Starlette or FastAPI ``app`` and return the probes they answer from
    (the lifespan marks them starting, running, stopping)."""
    probes = RegistryProbes(registry)
    router: Router = app.router
    router.routes.extend(
        routes(registry, prefix=prefix, settings=settings, probes=probes, status_page=status_page)
    )
    if getattr(app.state, STATE_PROBES, None) is None:
        setattr(app.state, STATE_PROBES, probes)
    return probes


def _respond(answer: Answer) -> Response:
    return Response(answer.json(), status_code=answer.status, media_type="application/json")


def _refused(refusal: Refusal) -> Response:
    return JSONResponse({"error": refusal.message}, status_code=refusal.status, headers=dict(refusal.headers))
