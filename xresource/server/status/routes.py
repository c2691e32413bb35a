"""The status page on aiohttp: ``<prefix>/``, its event stream, fragments and static files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from xresource.registry import Registry
from xresource.server.status.history import StatusHistory
from xresource.server.status.pages import (
    SECURITY_HEADERS,
    STATIC_TYPES,
    fragments_json,
    page_html,
    static_file,
)
from xresource.server.status.stream import HEADERS, StreamLimits, status_events

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_status_routes(
    app: web.Application,
    registry: Registry,
    *,
    prefix: str,
    checked: Callable[[Handler], Handler],
    history: StatusHistory | None = None,
    limits: StreamLimits | None = None,
) -> StatusHistory:
    """Add the page at ``<prefix>/`` (and ``<prefix>`` when a prefix is set); every route goes
    through ``checked`` (the Host rule of the other routes)."""
    history = history or StatusHistory(registry)
    limits = limits or StreamLimits()

    async def page(request: web.Request) -> web.Response:
        html = page_html(registry, history, prefix, dict(request.query))
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)

    async def fragments(request: web.Request) -> web.Response:
        body = fragments_json(registry, history, prefix)
        return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        data = static_file(name)
        if data is None:
            raise web.HTTPNotFound()
        headers = {"Content-Type": STATIC_TYPES[name], "Cache-Control": "no-cache", **_nosniff()}
        return web.Response(body=data, headers=headers)

    async def events(request: web.Request) -> web.StreamResponse:
        if limits.full():
            return web.json_response({"error": "too many open status streams"}, status=503)
        response = web.StreamResponse(headers=HEADERS)
        await response.prepare(request)
        chunks = status_events(registry, history, prefix, limits)
        try:
            async for piece in chunks:
                await response.write(piece)
        except ConnectionError:
            pass  # the reader went away
        finally:
            await chunks.aclose()
        return response

    if prefix:
        app.router.add_get(prefix, checked(page))
    app.router.add_get(prefix + "/", checked(page))
    app.router.add_get(prefix + "/status/fragments", checked(fragments))
    app.router.add_get(prefix + "/status/events", checked(events))
    app.router.add_get(prefix + "/status/static/{file}", checked(static))

    async def sampling(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(history.run(), name="xresource-status-samples")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        history.close()

    async def end_streams(app: web.Application) -> None:
        limits.closing.set()  # before aiohttp waits for open requests: the streams end now

    app.cleanup_ctx.append(sampling)
    app.on_shutdown.append(end_streams)
    return history


def _nosniff() -> dict[str, str]:
    return {"X-Content-Type-Options": "nosniff"}
