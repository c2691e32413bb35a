"""Secrets never appear in any output channel.

A registry runs resources whose credentials are references to environment
variables and files, including credentials the servers reject (so the error
paths are scanned too). Every channel a user or operator sees is then searched
for the resolved values: reprs, status, metadata, the HTTP endpoints of
``serve``, Prometheus metrics, every log record (with tracebacks), exception
messages and their chained causes, and the output of every CLI command.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import aiohttp
import pytest

from tests.support.http_servers import BEARER_TOKEN, rest_app, start_app
from tests.support.services import require_service
from tests.support.waiting import eventually
from xresource.registry import Registry
from xresource.server.app import create_app
from xresource.settings import RegistrySettings, Settings

PG_SECRET = "pg-Secret-4711-never-print"
MYSQL_SECRET = "my-Secret-0815-never-print"
REDIS_SECRET = "rd-Secret-2342-never-print"


def _manifests(folder: Path, secret_file: Path, rest_url: str) -> None:
    folder.mkdir()
    (folder / "pg.yaml").write_text(
        "name: pg\ntype: postgresql\n"
        "connection_string: postgresql://postgres@127.0.0.1:5432/test\n"
        "password: ${env:XR_LEAK_PG}\nmax_pool_size: 2\n"
    )
    (folder / "mysql.yaml").write_text(  # root has no password: this one is rejected by the server
        "name: my\ntype: mysql\nconnection_string: mysql://root:${env:XR_LEAK_MYSQL}@127.0.0.1:3306/test\n"
    )
    (folder / "redis.yaml").write_text(  # the server has no password: redis-py sends AUTH anyway
        "name: rd\ntype: redis_pubsub\nconnection_string: redis://:${env:XR_LEAK_REDIS}@127.0.0.1:6379/0\n"
        "max_reconnect_attempts: 0\n"
    )
    (folder / "api.yaml").write_text(
        f"name: api\ntype: rest_api\nendpoint: {rest_url}\nauth_params:\n  bearer_token: ${{file:{secret_file}}}\n"
    )


def _scan(text: str, where: str) -> None:
    for secret in (PG_SECRET, MYSQL_SECRET, REDIS_SECRET, BEARER_TOKEN):
        assert secret not in text, f"{where} leaks a secret: ...{text[max(0, text.find(secret) - 80):][:200]}..."


def _exception_text(exc: BaseException) -> str:
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.timeout(120)
async def test_no_secret_in_any_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("MariaDB", "127.0.0.1", 3306)
    require_service("Redis", "127.0.0.1", 6379)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("XR_LEAK_PG", PG_SECRET)
    monkeypatch.setenv("XR_LEAK_MYSQL", MYSQL_SECRET)
    monkeypatch.setenv("XR_LEAK_REDIS", REDIS_SECRET)
    secret_file = tmp_path / "token"
    secret_file.write_text(BEARER_TOKEN)
    app, _state = rest_app()
    server = await start_app(app)
    folder = tmp_path / "resources.d"
    _manifests(folder, secret_file, server.url)
    settings = Settings(registry=RegistrySettings(connect_timeout=5, retry_initial=0.2, health_interval=0.2,
                                                  audit_log=True))
    registry = Registry(folder, settings=settings)
    try:
        await registry.start()
        status = registry.status()
        assert status["pg"].state == "ready", status["pg"].error
        assert status["api"].state == "ready", status["api"].error
        assert status["my"].state == "failed"  # wrong password: the error path is scanned too
        assert "127.0.0.1:3306" in (status["my"].error or "")

        outputs: dict[str, str] = {}
        for name, st in status.items():
            outputs[f"status[{name}]"] = repr(st) + json.dumps(st.as_dict(), default=str)
        for name in ("pg", "api", "rd"):
            resource = registry.get(name)
            outputs[f"repr({name})"] = repr(resource) + str(resource)
            outputs[f"metadata({name})"] = json.dumps(resource.get_metadata(), default=str)
            outputs[f"model_dump({name})"] = json.dumps(resource.model_dump(), default=str)
        for name in ("my",):
            try:
                registry.get(name)
            except Exception as exc:
                outputs[f"get({name}) error"] = _exception_text(exc) + "".join(traceback.format_exception(exc))
        # A failing query's error, with its chained driver exception.
        try:
            await registry.get("pg").fetch("SELECT * FROM no_such_table_xr")
        except Exception as exc:
            outputs["query error"] = _exception_text(exc)
        # Let background retries (of "my") and health checks (of the rest) run and log: wait
        # for two retries of "my", each one a newer failure.
        for _ in range(2):
            failed_at = registry.status()["my"].since

            def failed_again(after: float = failed_at) -> bool:
                st = registry.status()["my"]
                return st.state == "failed" and st.since > after

            await eventually(failed_again, timeout=30, what="a background retry of my")

        runner = aiohttp.web.AppRunner(create_app(registry), access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            for path in ("/resources", "/metrics", "/readyz", "/healthz"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                    outputs[f"GET {path}"] = await response.text()
        await runner.cleanup()
    finally:
        await registry.stop()
        await server.stop()

    env = {**os.environ, "XR_LEAK_PG": PG_SECRET, "XR_LEAK_MYSQL": MYSQL_SECRET, "XR_LEAK_REDIS": REDIS_SECRET}
    cli = [sys.executable, "-m", "xresource.cli.main"]
    for args in (["validate", str(folder)], ["ls", str(folder)], ["ls", "--format", "json", str(folder)],
                 ["check", "--timeout", "5", str(folder)], ["check", "--format", "json", str(folder)],
                 ["plan", str(folder), "--against", str(folder)]):
        proc = subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=60)
        outputs[f"xresource {' '.join(args[:2])}"] = proc.stdout + proc.stderr

    outputs["logs"] = "\n".join(
        r.getMessage() + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
        for r in caplog.records
    )
    assert len(caplog.records) > 3
    for where, text in outputs.items():
        _scan(text, where)
