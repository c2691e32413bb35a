"""SecantusDB, a MongoDB wire-protocol server from PyPI, started for the tests.

``secantus`` is the session's shared server (in-memory storage). Tests that
kill a server or need authentication start their own :class:`SecantusServer`
on a spare port; it restarts on the same port, so clients find it again.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.support.services import REQUIRE_SERVICES, free_port, wait_port, wait_port_closed


def secantus_binary() -> str | None:
    found = shutil.which("secantusd-py")
    if found:
        return found
    beside = Path(sys.executable).with_name("secantusd-py")
    return str(beside) if beside.exists() else None


class SecantusServer:
    """One ``secantusd-py`` process: ``start()``, ``kill()`` (a crash), ``stop()`` (clean)."""

    def __init__(self, *, storage: str = ":memory:", auth: bool = False, standalone: bool = False) -> None:
        binary = secantus_binary()
        if binary is None:
            raise RuntimeError("secantusd-py is not installed (pip install secantusdb)")
        self.binary = binary
        self.port = free_port()
        self.storage = storage
        self.auth = auth
        self.standalone = standalone  # hello then reports a standalone server, not a replica set
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", self.storage]
        if self.auth:
            args.append("--auth")
        if self.standalone:
            args.append("--standalone")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_port("127.0.0.1", self.port, timeout=30)
        except TimeoutError:
            self.kill()
            raise

    def _end(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        wait_port_closed("127.0.0.1", self.port, timeout=15)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown that flushes persistent storage (takes a couple of seconds)."""
        self._end(signal.SIGTERM)

    def url(self, database: str = "test", user: str | None = None) -> str:
        auth = f"{user}@" if user else ""
        return f"mongodb://{auth}127.0.0.1:{self.port}/{database}"


def _require_binary() -> None:
    if secantus_binary() is None:
        message = "secantusd-py is not installed (pip install secantusdb)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (XRESOURCE_REQUIRE_SERVICES=1)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def secantus() -> Iterator[SecantusServer]:
    """The session's shared SecantusDB (in-memory); never stop it in a test."""
    _require_binary()
    server = SecantusServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()  # in-memory: nothing to flush, and SIGTERM takes seconds


@pytest.fixture
def private_secantus() -> Iterator[SecantusServer]:
    """A SecantusDB of the test's own, free to be killed and restarted."""
    _require_binary()
    server = SecantusServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()
