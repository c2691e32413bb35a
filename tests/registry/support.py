"""Helpers for the registry and server tests: fast settings, polling, manifests, a REST server.

Nothing here stands in for a backend: the REST server is a real aiohttp
server on a loopback port, and manifests are real files that a real watcher
sees. Tests poll for conditions with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from tests.support.services import free_port
from tests.support.waiting import eventually as eventually  # the one waiting helper, re-exported
from tests.support.waiting import stays as stays
from xresource.settings import RegistrySettings, Settings

T = TypeVar("T")

# Small values so a test waits milliseconds, not the production seconds. Rescanning is off:
# a test that sees a change then proves the watcher saw it, not the safety-net rescan.
FAST: dict[str, Any] = {
    "watch_debounce_ms": 20,
    "watch_step_ms": 5,
    "rescan_interval": 0,
    "connect_timeout": 2.0,
    "drain_timeout": 5.0,
    "close_grace": 0.0,
    "health_interval": 0,
    "retry_initial": 0.05,
    "retry_max": 0.2,
}


def fast_settings(**overrides: Any) -> Settings:
    return Settings(registry=RegistrySettings(**{**FAST, **overrides}))


async def swapped(registry: Any, name: str, old: object, *, timeout: float = 5.0) -> Any:
    """Wait until ``registry.get(name)`` returns an instance other than ``old``; return it."""

    def new_instance() -> Any:
        try:
            current = registry.get(name)
        except Exception:
            return None
        return current if current is not old else None

    return await eventually(new_instance, timeout=timeout, what=f"{name} swapped")


# ---- files ----------------------------------------------------------------------------------


def csv_manifest(name: str, data_file: Path, *extra_lines: str) -> str:
    return "\n".join([f"name: {name}", "type: csv", f"file_path: {data_file}", *extra_lines]) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write as careful editors and tools do: a temporary file, then a rename over the target."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class ConfigMapDir:
    """A folder laid out as Kubernetes mounts a ConfigMap volume, updated as the kubelet does.

    ``name -> ..data/name`` links, ``..data -> ..<timestamp>``; an update writes a new
    timestamped folder, points ``..data_tmp`` at it, renames that over ``..data`` in one
    step, then removes the old folder (and links to names that are gone).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def update(self, files: dict[str, str]) -> None:
        self._count += 1
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{os.getpid()}{self._count:04d}"
        new_dir = self.folder / stamp
        new_dir.mkdir()
        for name, text in files.items():
            (new_dir / name).write_text(text)
        data = self.folder / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.folder / "..data_tmp"
        tmp.symlink_to(stamp)
        os.replace(tmp, data)
        for name in files:
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        for entry in self.folder.iterdir():
            if entry.is_symlink() and not entry.name.startswith(".") and entry.name not in files:
                entry.unlink()
        if old is not None:
            shutil.rmtree(self.folder / old)


# ---- a real REST server ---------------------------------------------------------------------


@dataclass
class ApiServer:
    """An aiohttp server on a fixed loopback port that can be stopped and started again.

    ``/`` answers JSON naming the ``Authorization`` header it got; ``/gate`` waits
    until ``gate`` is set (a connect that blocks until the test releases it);
    ``/slow?delay=s`` answers after a delay. Every request is counted.
    """

    port: int = field(default_factory=free_port)
    requests: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # client address of each `/` request
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        """Client connections the server holds open right now."""
        if self.runner is None or self.runner.server is None:
            return 0
        return len(self.runner.server.connections)

    async def start(self) -> ApiServer:
        app = web.Application()
        app.router.add_route("*", "/", self._root)
        app.router.add_route("*", "/gate", self._gate)
        app.router.add_get("/slow", self._slow)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.05, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _root(self, request: web.Request) -> web.Response:
        self.requests += 1
        auth = request.headers.get("Authorization")
        self.authorizations.append(auth)
        if request.transport is not None:
            self.peers.append(tuple(request.transport.get_extra_info("peername")[:2]))
        return web.json_response({"ok": True, "authorization": auth})

    async def _gate(self, request: web.Request) -> web.Response:
        self.requests += 1
        await self.gate.wait()
        return web.json_response({"ok": True})

    async def _slow(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(float(request.query.get("delay", "0.05")))
        return web.json_response({"ok": True})


def rest_manifest(name: str, url: str, *extra_lines: str) -> str:
    return (
        "\n".join([f"name: {name}", "type: rest_api", f"endpoint: {url}", "retries: 0", *extra_lines]) + "\n"
    )


async def black_hole() -> tuple[asyncio.Server, Callable[[], Awaitable[None]]]:
    """A TCP server that accepts connections and never answers (an unreachable backend that hangs)."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)

    async def close() -> None:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()

    return server, close
