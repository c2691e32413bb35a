"""The aiohttp routes: ``/healthz``, ``/readyz``, ``/resources``, ``/metrics``, ``POST /reload``.

``create_app`` builds the application ``xresource serve`` runs; ``add_routes``
adds the same routes (under a prefix) to any aiohttp application, which is what
``xresource.integrations.aiohttp`` offers users. Every route except
``/healthz`` checks the ``Host`` header (see ``xresource.server.guard``);
``POST /reload`` also refuses cross-site requests, asks for the token when one
is set, and coalesces bursts into one or two reloads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from xresource.registry import Registry, ReloadResult
from xresource.server.coalesce import Coalescer
from xresource.server.guard import Protection, Refusal
from xresource.server.probes import (
    METRICS_CONTENT_TYPE,
    Answer,
    RegistryProbes,
    clean_prefix,
    dumps,
    reload_answer,
)
from xresource.settings import ServerSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBES_KEY = web.AppKey("xresource_probes", RegistryProbes)
COALESCER_KEY = web.AppKey("xresource_reloads", Coalescer[ReloadResult])


def create_app(
    registry: Registry,
    *,
    settings: ServerSettings | None = None,
    bound: str | Iterable[str] | None = "127.0.0.1",
    probes: RegistryProbes | None = None,
) -> web.Application:
    """The application of ``xresource serve`` for ``registry``, bound (for the Host check) to ``bound``."""
    app = web.Application()
    add_routes(app, registry, settings=settings, bound=bound, probes=probes)
    return app


def add_routes(
    app: web.Application,
    registry: Registry,
    *,
    prefix: str = "",
    settings: ServerSettings | None = None,
    bound: str | Iterable[str] | None = "0.0.0.0",
    probes: RegistryProbes | None = None,
    protection: Protection | None = None,
    status_page: bool = True,
) -> RegistryProbes:
    """Add the routes under ``prefix`` (``""`` or ``"/ops"``) and return the probes they answer from.

    With ``status_page``, the operator's page is at ``<prefix>/`` (see ``xresource.server.status``).
    """
    prefix = clean_prefix(prefix)
    probes = probes if probes is not None else RegistryProbes(registry)
    protection = protection or Protection.from_settings(settings or ServerSettings(), bound)
    reloads: Coalescer[ReloadResult] = Coalescer(registry.reload)
    if PROBES_KEY not in app:  # the first mount is the one other code (the status page) finds
        app[PROBES_KEY] = probes
        app[COALESCER_KEY] = reloads

    def checked(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = protection.host_refusal(request.headers.get("Host"))
            if refusal is not None:
                return refused(refusal)
            return await handler(request)

        return guarded

    async def healthz(request: web.Request) -> web.Response:
        return respond(probes.liveness())

    async def readyz(request: web.Request) -> web.Response:
        return respond(probes.readiness())

    async def resources(request: web.Request) -> web.Response:
        return respond(probes.resources())

    async def resource(request: web.Request) -> web.Response:
        return respond(probes.resource(request.match_info["name"]))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=probes.metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def reload(request: web.Request) -> web.Response:
        refusal = protection.reload_refusal(request.headers)
        if refusal is not None:
            return refused(refusal)
        return respond(reload_answer(await reloads.run()))

    app.router.add_get(prefix + "/healthz", healthz)  # liveness answers whatever the Host
    app.router.add_get(prefix + "/readyz", checked(readyz))
    app.router.add_get(prefix + "/resources", checked(resources))
    app.router.add_get(prefix + "/resources/{name}", checked(resource))
    app.router.add_get(prefix + "/metrics", checked(metrics))
    app.router.add_post(prefix + "/reload", checked(reload))
    if status_page:
        from xresource.server.status.routes import add_status_routes

        add_status_routes(app, registry, prefix=prefix, checked=checked)
    return probes


def respond(answer: Answer) -> web.Response:
    return web.json_response(answer.body, status=answer.status, dumps=dumps)


def refused(refusal: Refusal) -> web.Response:
    return web.json_response({"error": refusal.message}, status=refusal.status, headers=dict(refusal.headers))
