"""A value resolved from a reference is never echoed, even truncated, re-encoded or re-cased.

The attack: a manifest puts ``${file:/etc/passwd}`` where the database name
goes; PostgreSQL answers ``database "root:x:0:0:..." does not exist``,
truncated to 63 bytes, so an exact-match scrub misses it. Here a temporary
file with a long fake passwd line stands in for /etc/passwd, and no channel
(``check``, ``status()``, ``/resources``) may hold any 8 characters of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.services import require_service
from xresource.registry import Registry
from xresource.secrets import scrub
from xresource.server.app import create_app
from xresource.settings import RegistrySettings, Settings

FAKE_PASSWD = (
    "root:x:0:0:root-of-the-fake:/root/fake-home:/bin/fakebash\n"
    "xrdaemon:x:1:1:fake-daemon-user:/usr/sbin/fake:/usr/sbin/nologin-fake\n"
    "xrbin:x:2:2:fake-bin-user:/bin/fake:/usr/sbin/nologin-fake2\n"
)


def _assert_no_window(text: str, value: str, where: str) -> None:
    for start in range(len(value) - 7):
        window = value[start : start + 8]
        assert window not in text, f"{where} echoes {window!r}: {text[:400]}"


@pytest.mark.timeout(120)
async def test_a_file_reference_as_database_name_is_never_echoed(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    secret = tmp_path / "passwd"
    secret.write_text(FAKE_PASSWD)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "db.yaml").write_text(
        f"name: db\ntype: postgresql\nconnection_string: postgresql://postgres@127.0.0.1:5432/${{file:{secret}}}\n"
        "min_pool_size: 1\nmax_pool_size: 1\n"
    )
    value = FAKE_PASSWD.rstrip("\n")
    outputs: dict[str, str] = {}
    settings = Settings(registry=RegistrySettings(connect_timeout=10, retry_initial=60, health_interval=0))
    async with Registry(folder, settings=settings) as registry:
        status = registry.status()["db"]
        assert status.state == "failed"
        assert "does not exist" in (status.error or "")  # the server's answer, masked
        outputs["status()"] = repr(registry.status()) + json.dumps(status.as_dict(), default=str)
        runner = web.AppRunner(create_app(registry), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as http:
                for path in ("/resources", "/metrics", "/readyz"):
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        outputs[path] = await response.text()
        finally:
            await runner.cleanup()
    for fmt in ("table", "json"):
        proc = subprocess.run(
            [sys.executable, "-m", "xresource.cli.main", "check", "--format", fmt, "--timeout", "10", str(folder)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 1
        assert "does not exist" in proc.stdout
        outputs[f"check --format {fmt}"] = proc.stdout + proc.stderr
    for where, text in outputs.items():
        _assert_no_window(text, value, where)
        _assert_no_window(text.lower(), value.lower(), where)


@pytest.mark.parametrize(
    ("text", "values", "kept"),
    [
        # Truncated by the server: a prefix of the value.
        ('database "root:x:0:0:root-of-the-fake:/root/fa" does not exist', [FAKE_PASSWD], 'database "'),
        # Re-encoded by an HTTP client: %2F sent, / quoted back (and the other way round).
        ("GET /v1?token=abc/def/ghijklmn failed", ["abc%2Fdef%2Fghijklmn"], "GET /v1?token="),
        ("GET /v1?token=abc%2Fdef%2Fghijklmn failed", ["abc/def/ghijklmn"], "GET /v1?token="),
        # Case folded by the server.
        ("unknown database 'shop-eu-prod-7'", ["Shop-EU-Prod-7"], "unknown database '"),
        # A one-letter value masks only where it stands alone.
        ('user "s" has no sessions at 127.0.0.1', ["s"], "sessions at 127.0.0.1"),
    ],
)
def test_scrub_masks_parts_and_forms_not_unrelated_text(text: str, values: list[str], kept: str) -> None:
    cleaned = scrub(text, values)
    assert kept in cleaned
    assert "***" in cleaned
    for value in values:
        _assert_no_window(cleaned, value, "scrub")
