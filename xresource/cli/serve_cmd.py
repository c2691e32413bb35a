"""``xresource serve PATH``: the live registry with watching and HTTP endpoints.

Order matters for probes and for stopping:

1. the HTTP port opens first: ``/healthz`` answers 200 and ``/readyz`` 503
   ``starting`` while resources connect (a slow backend cannot make the
   liveness probe fail and the pod restart in a loop);
2. the registry starts (an invalid folder still exits 1, naming every problem);
3. SIGTERM or SIGINT: ``/readyz`` says ``stopping``, HTTP closes (open requests
   get ``shutdown_timeout``), leases drain and resources close. The whole stop
   is bounded by ``drain_timeout + shutdown_timeout``: a hung reload or a slow
   connect is abandoned rather than keeping the process alive.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from xresource.cli.layers import add_overlay_option
from xresource.errors import ManifestError, XResourceSecretError
from xresource.settings import load_settings

if TYPE_CHECKING:
    from xresource.registry import Registry, ReloadResult
    from xresource.server.http import HttpServer

log = logging.getLogger("xresource.serve")
STOP_MARGIN = 1.0  # seconds on top of drain + shutdown timeouts for closing what is left


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the live registry with hot reload and HTTP endpoints")
    parser.add_argument("path", metavar="PATH", help="folder of manifests")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--no-watch", action="store_true", help="reload only on SIGHUP or POST /reload")
    add_overlay_option(parser)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return asyncio.run(serve(args))
    except (ManifestError, XResourceSecretError) as exc:
        print(exc, file=sys.stderr)
        return 1


async def serve(args: argparse.Namespace) -> int:
    from xresource.registry import Registry
    from xresource.server.app import COALESCER_KEY, create_app
    from xresource.server.http import HttpServer
    from xresource.server.probes import RegistryProbes

    settings = load_settings(args.settings)
    registry = Registry([args.path, *args.overlay], watch=not args.no_watch, settings=settings)
    probes = RegistryProbes(registry, phase="starting")
    app = create_app(registry, settings=settings.server, bound=args.host, probes=probes)
    reloads = app[COALESCER_KEY]
    http = HttpServer(app, args.host, args.port, settings.server)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await http.start()
    except OSError as exc:
        print(f"xresource: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    log.info("listening on %s; starting %s", http.url, args.path)

    starting = asyncio.create_task(registry.start(), name="xresource-start")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and not starting.cancelled() and starting.exception() is not None:
        stopping.cancel()
        await http.stop()
        starting.result()  # re-raises ManifestError: exit 1 with every problem
    if starting.done():
        probes.mark("running")
        ready = sum(1 for s in registry.status().values() if s.state == "ready")
        log.info("serving %d resources (%d ready) from %s on %s", len(registry), ready, args.path, http.url)
        background: set[asyncio.Task[Any]] = set()

        def on_sighup() -> None:
            task = asyncio.create_task(_reload_on_signal(reloads.run()), name="xresource-sighup")
            background.add(task)
            task.add_done_callback(background.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        await stop.wait()
        loop.remove_signal_handler(signal.SIGHUP)
        log.info("shutting down: draining and closing resources")
    else:
        log.info("stopped during start")
    probes.mark("stopping")

    budget = settings.registry.drain_timeout + settings.server.shutdown_timeout + STOP_MARGIN
    shutdown = asyncio.create_task(_shutdown(http, registry, starting), name="xresource-shutdown")
    # asyncio.wait, not wait_for: a hard deadline even if something swallows a cancellation.
    done, _ = await asyncio.wait({shutdown}, timeout=budget)
    if not done:
        # Something does not end when asked (a reload stuck on a read, a driver ignoring
        # cancellation). Stopping was asked for and is what happens: leave without waiting
        # for it, since the interpreter's exit would join a stuck worker thread forever.
        log.warning("stop took longer than %.1f s; exiting without waiting for the rest", budget)
        _exit_now(0)
    shutdown.result()
    log.info("stopped")
    return 0


async def _shutdown(http: HttpServer, registry: Registry, starting: asyncio.Task[None]) -> None:
    if not starting.done():
        starting.cancel()  # a cancelled start() leaves nothing connected
        await asyncio.gather(starting, return_exceptions=True)
    await http.stop()
    # A reload in flight (from a request, SIGHUP or the watcher) finishes or is abandoned
    # by the caller's deadline: registry.stop() waits for it before closing everything.
    await registry.stop()


async def _reload_on_signal(reload: Awaitable[ReloadResult]) -> None:
    try:
        result = await reload
    except Exception as exc:  # noqa: BLE001 - logged in one line; serving goes on
        log.error("reload after SIGHUP failed: %s: %s", type(exc).__name__, exc)
        return
    log.info("reload after SIGHUP: %s", result.outcome)


def _exit_now(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
