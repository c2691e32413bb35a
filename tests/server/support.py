"""Helpers of the server tests: ``xresource serve`` as a child process, raw sockets, a silent TCP server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.services import free_port

FAST_REGISTRY = """\
[registry]
health_interval = 0
close_grace = 0
retry_initial = 0.05
retry_max = 0.2
watch_debounce_ms = 20
watch_step_ms = 5
rescan_interval = 0
"""


class Serve:
    """``xresource serve`` as a child process on a spare port.

    ``registry`` lines go into the fast ``[registry]`` section; ``settings`` follows it
    (whole sections, such as ``[server]``).
    """

    def __init__(
        self,
        tmp_path: Path,
        folder: Path,
        *extra: str,
        registry: str = "",
        settings: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        settings_file = tmp_path / "settings.toml"
        settings_file.write_text(FAST_REGISTRY + registry + settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("XRESOURCE_")}
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xresource.cli.main", "--settings", str(settings_file), "serve", str(folder),
             "--port", str(self.port), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env,
        )  # fmt: skip

    async def wait_up(
        self, http: aiohttp.ClientSession, *, started: bool = True, timeout: float = 20
    ) -> None:
        """Until ``/healthz`` answers 200 and, with ``started``, ``/readyz`` no longer says
        ``starting`` (the port opens before the registry starts)."""
        deadline = asyncio.get_running_loop().time() + timeout
        path = "/readyz" if started else "/healthz"
        while asyncio.get_running_loop().time() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                async with http.get(f"{self.url}{path}") as response:
                    body = await response.json()
                    if response.status == 200 or (started and body.get("status") != "starting"):
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("serve did not come up")

    async def resources(self, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        async with http.get(f"{self.url}/resources") as response:
            return {r["name"]: r for r in (await response.json())["resources"]}

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> tuple[int, str]:
        """Send ``signum`` (0: none, just wait) and return the exit status and stderr."""
        if signum and self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"serve did not exit within {timeout}s of signal {signum}:\n{err}") from None
        return self.proc.returncode, err


class SilentServer:
    """A TCP port that accepts connections and never answers (a hung backend); counts them."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> SilentServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)  # held open, never answered

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def partial_header_clients(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` connections that each send half a request header and then nothing."""
    clients = []
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue  # refused at the cap: that is allowed too
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
        clients.append((reader, writer))
    return clients


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout`` seconds
    (whatever it sent before: the rest of a response, or nothing)."""
    try:
        await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return reader.at_eof()
