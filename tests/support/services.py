"""Finding, waiting for and starting the real servers tests talk to.

With ``XRESOURCE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing server
fails the test run; otherwise tests that need it are skipped with a reason.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

REQUIRE_SERVICES = os.environ.get("XRESOURCE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Poll until ``host:port`` accepts connections; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_port_closed(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} still accepts connections after {timeout}s")


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with XRESOURCE_REQUIRE_SERVICES=1, fail) when a server is not reachable."""
    if port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (XRESOURCE_REQUIRE_SERVICES=1)")
    pytest.skip(message)
