"""Run an aiohttp application on a TCP port with the ``[server]`` limits applied."""

from __future__ import annotations

from aiohttp import web

from xresource.server.connections import ConnectionLimiter, GuardedSite
from xresource.settings import ServerSettings


class HttpServer:
    """``app`` on ``host:port`` (0: a spare port) with timeouts, size limits and a connection cap."""

    def __init__(self, app: web.Application, host: str, port: int, settings: ServerSettings) -> None:
        self.host = host
        self.settings = settings
        self.limiter = ConnectionLimiter(settings.max_connections, settings.header_timeout)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=settings.shutdown_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            max_line_size=settings.max_line_size,
            max_field_size=settings.max_field_size,
        )
        self._site: GuardedSite | None = None
        self._port = port

    async def start(self) -> None:
        """Listen; raises ``OSError`` when the address cannot be bound (nothing is left open then)."""
        await self._runner.setup()
        site = GuardedSite(self._runner, self.host, self._port, self.limiter, backlog=self.settings.backlog)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self._site = site

    @property
    def port(self) -> int:
        return self._site.port if self._site is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, give open requests ``shutdown_timeout`` seconds, close the rest."""
        await self._runner.cleanup()
