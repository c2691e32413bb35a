"""The HTTP endpoints of ``xresource serve``, served by a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.registry.support import ApiServer, csv_manifest, fast_settings, rest_manifest
from tests.support.http_servers import RunningServer, start_app
from xresource.registry import Registry
from xresource.server.app import create_app

TOKEN = "srv-Token-5150-never-print"
PASSWORD = "srv-Pass-7734-never-print"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XR_SRV_TOKEN", TOKEN)
    monkeypatch.setenv("XR_SRV_PASSWORD", PASSWORD)


async def _serve(registry: Registry) -> RunningServer:
    return await start_app(create_app(registry))


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_readyz_goes_from_503_to_200_when_a_failed_resource_recovers(
    manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    backend = ApiServer()  # its port is reserved; the server starts later
    (manifests / "api.yaml").write_text(rest_manifest("api", backend.url))
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        server = await _serve(registry)
        try:
            status, body = await _get(http, f"{server.url}/readyz")
            assert status == 503
            payload = json.loads(body)
            assert payload["ready"] is False
            assert payload["status"] == "not_ready"
            assert list(payload["not_ready"]) == ["api"]
            assert payload["not_ready"]["api"]["state"] == "failed"
            assert "Cannot connect" in payload["not_ready"]["api"]["error"]
            assert (await _get(http, f"{server.url}/healthz"))[0] == 200  # alive, though not ready
            await backend.start()
            # No sleep for "long enough": poll the endpoint until it answers 200 (or time out).
            codes = [status]
            deadline = asyncio.get_running_loop().time() + 5
            while codes[-1] != 200 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
                codes.append((await _get(http, f"{server.url}/readyz"))[0])
            assert codes[-1] == 200, codes
            assert set(codes) == {503, 200}, codes
            assert json.loads((await _get(http, f"{server.url}/readyz"))[1]) == {
                "status": "ready",
                "ready": True,
                "not_ready": {},
                "pending": {},
                "reload_error": None,
            }
        finally:
            await server.stop()
            await backend.stop()


async def test_resources_json_shape_without_secrets(
    manifests: Path, data: Path, api: ApiServer, http: aiohttp.ClientSession
) -> None:
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "tags: [edge]", "auth_params:", "  bearer_token: ${env:XR_SRV_TOKEN}")
    )
    user_url = api.url.replace("http://", "http://svc:${env:XR_SRV_PASSWORD}@")
    (manifests / "basic.yaml").write_text(rest_manifest("basic", user_url, "connect: lazy"))
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "description: Users"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        await registry.aget("basic")  # resolves its password
        server = await _serve(registry)
        try:
            status, body = await _get(http, f"{server.url}/resources")
        finally:
            await server.stop()
    assert status == 200
    assert TOKEN not in body
    assert PASSWORD not in body
    payload = json.loads(body)
    assert payload["count"] == 3
    rows: dict[str, dict[str, Any]] = {r["name"]: r for r in payload["resources"]}
    assert list(rows) == ["a", "api", "basic"]
    a = rows["a"]
    assert set(a) >= {"name", "type", "state", "generation", "path", "error", "metadata", "leases", "tags"}
    assert (a["type"], a["state"], a["generation"], a["error"]) == ("csv", "ready", 1, None)
    assert a["path"] == str(manifests / "a.yaml")
    assert a["metadata"]["description"] == "Users"
    assert a["metadata"]["file_path"] == str(data / "a.csv")
    assert rows["api"]["tags"] == ["edge"]
    assert rows["api"]["metadata"]["endpoint"] == api.url
    assert rows["basic"]["state"] == "ready"
    assert "***" in rows["basic"]["metadata"]["endpoint"]
    assert isinstance(a["manifest_hash"], str)
    assert len(a["manifest_hash"]) == 64


async def test_metrics_are_prometheus_text_with_state_reload_and_lease_series(
    manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "down.yaml").write_text(rest_manifest("down", "http://127.0.0.1:9"))  # discard port
    async with Registry(manifests, settings=fast_settings(retry_initial=30)) as registry:
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await registry.reload()
        (manifests / "bad.yaml").write_text("name: [\n")
        await registry.reload()
        server = await _serve(registry)
        try:
            async with registry.lease("a"), http.get(f"{server.url}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
        finally:
            await server.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }

    def value(series: str, **labels: str) -> float:
        return samples[(series, tuple(sorted(labels.items())))]

    assert value("xresource_resource_state", name="a", type="csv", state="ready") == 1.0
    assert value("xresource_resource_state", name="a", type="csv", state="failed") == 0.0
    assert value("xresource_resource_state", name="down", type="rest_api", state="failed") == 1.0
    assert value("xresource_resource_generation", name="a") == 2.0
    assert value("xresource_leases_open", name="a") == 1.0
    assert value("xresource_leases_open", name="down") == 0.0
    assert value("xresource_reloads_total", outcome="applied") == 1.0
    assert value("xresource_reloads_total", outcome="rejected") == 1.0
    assert value("xresource_last_reload_timestamp_seconds") > 1.7e9
    assert value("xresource_ready") == 0.0
    assert families["xresource_reloads"].type == "counter"
    assert families["xresource_resource_state"].type == "gauge"


async def test_post_reload_applies_and_reports(
    manifests: Path, data: Path, http: aiohttp.ClientSession
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        server = await _serve(registry)
        try:
            (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
            (manifests / "bad.yaml").write_text("name: x\ntype: nope\n")
            async with http.post(f"{server.url}/reload", json={}) as response:
                assert response.status == 200
                payload = await response.json()
            async with http.get(f"{server.url}/reload") as response:
                assert response.status == 405  # a reload changes state: POST only
        finally:
            await server.stop()
    assert payload["outcome"] == "partial"
    assert payload["added"] == ["b"]
    assert len(payload["problems"]) == 1
    assert "bad.yaml:2:1: x: type: unknown resource type" in payload["problems"][0]
