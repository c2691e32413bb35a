"""A private PostgreSQL cluster for tests that need a password, TLS or a server to kill.

The machine's shared PostgreSQL trusts every local login and must never be
stopped, so tests that need a wrong password to fail, a TLS handshake, or a
crash start their own cluster: ``initdb`` with SCRAM password auth into a
temporary folder, a self-signed CA and server certificate, ``pg_ctl`` on a
spare loopback port. PostgreSQL refuses to run as root, so when the tests run
as root the binaries run as the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import REQUIRE_SERVICES, free_port, wait_port, wait_port_closed

PG_BIN = Path(os.environ.get("XRESOURCE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


class PrivatePostgres:
    """One throwaway cluster: ``init()``, ``start()``, ``stop(mode)``, ``destroy()``."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="xr-pg-"))
        self.data = self.root / "data"
        self.ca_file = self.root / "ca.crt"
        self.other_ca_file = self.root / "other-ca.crt"
        self._run_as = self._system_user()
        self._running = False

    @staticmethod
    def _system_user() -> list[str]:
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", SUPERUSER, "--"]

    def _own(self, *paths: Path) -> None:
        if not self._run_as:
            return
        entry = pwd.getpwnam(SUPERUSER)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._run_as, str(PG_BIN / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def init(self) -> None:
        """``initdb`` with SCRAM auth for TCP logins, and TLS certificates."""
        self._own(self.root)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        pwfile.unlink()
        self._make_certificates()

    def _make_certificates(self) -> None:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ("ca", "other-ca"):
            openssl(
                "req", "-x509", *ec, "-keyout", str(self.root / f"{name}.key"),
                "-out", str(self.root / f"{name}.crt"), "-days", "2", "-subj", f"/CN=xresource {name}",
            )  # fmt: skip
        openssl(
            "req", *ec, "-keyout", str(self.root / "server.key"),
            "-out", str(self.root / "server.csr"), "-subj", "/CN=localhost",
        )  # fmt: skip
        ext = self.root / "san.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl(
            "x509", "-req", "-in", str(self.root / "server.csr"), "-CA", str(self.ca_file),
            "-CAkey", str(self.root / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(self.root / "server.crt"),
        )  # fmt: skip
        key = self.root / "server.key"
        key.chmod(0o600)
        self._own(key, self.root / "server.crt")

    def start(self) -> None:
        """Start on ``self.port`` (the same port every time, so clients find it again)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            f"-c ssl=on -c ssl_cert_file={self.root / 'server.crt'} -c ssl_key_file={self.root / 'server.key'}"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options, "start")
        self._running = True
        wait_port("127.0.0.1", self.port, timeout=30)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (clean) or ``-m immediate`` (a crash: no shutdown checkpoint)."""
        if not self._running:
            return
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self._running = False
        wait_port_closed("127.0.0.1", self.port, timeout=30)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{SUPERUSER}:{password}" if password else SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"


def private_postgres_available() -> str | None:
    """Why a private cluster cannot be made here, or ``None`` when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries not found in {PG_BIN} (set XRESOURCE_PG_BIN)"
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root and there is no {SUPERUSER!r} system user to run PostgreSQL"
    return None


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private cluster for the test module; the superuser's password is ``server.password``."""
    why = private_postgres_available()
    if why is not None:
        if REQUIRE_SERVICES:
            pytest.fail(why + " (XRESOURCE_REQUIRE_SERVICES=1)")
        pytest.skip(why)
    server = PrivatePostgres(password="pg-" + os.urandom(8).hex())
    atexit.register(server.destroy)  # also on an interrupted run; destroy() is idempotent
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()
        atexit.unregister(server.destroy)
