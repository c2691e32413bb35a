"""``xresource serve PATH``: the live registry with watching and HTTP endpoints."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from xresource.errors import ManifestError
from xresource.settings import load_settings

log = logging.getLogger("xresource.serve")


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the live registry with hot reload and HTTP endpoints")
    parser.add_argument("path", metavar="PATH", help="folder of manifests")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--no-watch", action="store_true", help="reload only on SIGHUP or POST /reload")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return asyncio.run(serve(args))
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 1


async def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from xresource.registry import Registry
    from xresource.server.app import create_app

    registry = Registry(args.path, watch=not args.no_watch, settings=load_settings(args.settings))
    # Handlers go in before start(): a SIGTERM while resources connect must still stop cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    starting = asyncio.create_task(registry.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()  # a cancelled start() leaves nothing connected
        await asyncio.gather(starting, return_exceptions=True)
        log.info("stopped during start")
        return 0
    stopping.cancel()
    starting.result()  # re-raises ManifestError
    registry.install_signal_handlers()  # SIGHUP reloads
    runner = web.AppRunner(create_app(registry), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as exc:
        await registry.stop()
        await runner.cleanup()
        print(f"xresource: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    ready = sum(1 for s in registry.status().values() if s.state == "ready")
    log.info(
        "serving %d resources (%d ready) from %s on http://%s:%d",
        len(registry),
        ready,
        args.path,
        args.host,
        args.port,
    )
    await stop.wait()
    log.info("shutting down: draining and closing resources")
    await runner.cleanup()
    await registry.stop()
    log.info("stopped")
    return 0
