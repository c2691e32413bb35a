"""Cosmetic edits apply in place; every reload says why; what is pending is visible; take_over.

The PostgreSQL tests use the shared server (127.0.0.1:5432, database ``test``);
the pending tests run a real REST server on loopback and the real ``serve`` app.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
import pytest

from tests.registry.support import ApiServer, csv_manifest, fast_settings, rest_manifest
from tests.support.http_servers import start_app
from tests.support.services import require_service
from xresource import ResourceFactory
from xresource.registry import Registry, ReloadEvent
from xresource.resource import State, XResource
from xresource.server.app import create_app

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg(*extra: str, pool: int = 3) -> str:
    lines = ["name: pg", "type: postgresql", f"connection_string: {PG_URL}", f"min_pool_size: {pool}"]
    return "\n".join([*lines, f"max_pool_size: {pool}", *extra]) + "\n"


async def _backend_pids(resource: Any, pool: int) -> set[int]:
    """``pg_backend_pid()`` of every pooled connection: all of them are held at once."""
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(resource.acquire()) for _ in range(pool)]
        return {await c.fetchval("SELECT pg_backend_pid()") for c in connections}


async def test_a_description_edit_keeps_the_pool_and_its_server_connections(
    manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    caplog.set_level(logging.INFO, logger="xresource.registry")
    (manifests / "pg.yaml").write_text(_pg("description: orders, v1", "tags: [a]"))
    events: list[ReloadEvent] = []
    async with Registry(manifests, settings=fast_settings()) as registry:
        registry.on_event(events.append)
        pg = registry.get("pg")
        pids = await _backend_pids(pg, 3)
        assert len(pids) == 3
        (manifests / "pg.yaml").write_text(_pg("description: orders, v2", "tags: [a, b]"))
        result = await registry.reload()
        assert result.updated == ["pg"]
        assert result.replaced == []
        assert registry.get("pg") is pg
        assert await _backend_pids(pg, 3) == pids
        status = registry.status()["pg"]
        assert status.generation == 2
        assert status.metadata["description"] == "orders, v2"
        assert status.tags == ("a", "b")
        assert status.fields["description"] == "orders, v2"
        [event] = events
        assert (event.kind, event.name, event.generation) == ("updated", "pg", 2)
        assert [(c.field, c.old, c.new) for c in event.changes] == [
            ("description", "orders, v1", "orders, v2"),
            ("tags", ["a"], ["a", "b"]),
        ]
        assert "updated pg generation=2 path=" in caplog.text
        assert 'changed: description: "orders, v1" -> "orders, v2", tags: ["a"] -> ["a", "b"]' in caplog.text

        # A pool-size edit touches the connection: a new instance with its own connections.
        (manifests / "pg.yaml").write_text(_pg("description: orders, v2", "tags: [a, b]", pool=2))
        result = await registry.reload()
        assert result.replaced == ["pg"]
        new = registry.get("pg")
        assert new is not pg
        assert (await _backend_pids(new, 2)).isdisjoint(pids)
        assert registry.status()["pg"].generation == 3
        assert [(c.field, c.old, c.new) for c in events[-1].changes] == [
            ("max_pool_size", 3, 2),
            ("min_pool_size", 3, 2),
        ]
        await registry.wait_closed()
        assert pg.state is State.CLOSED


async def test_a_missing_secret_file_is_pending_until_fixed(
    tmp_path: Path, manifests: Path, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("token-one")
    typo = tmp_path / "tokne"

    def manifest(secret: Path) -> str:
        return rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{secret}}}")

    (manifests / "api.yaml").write_text(manifest(token))
    settings = fast_settings(ready_requires_applied=True)
    async with Registry(manifests, settings=settings) as registry, aiohttp.ClientSession() as http:
        server = await start_app(create_app(registry))
        try:

            async def probe() -> tuple[int, dict[str, Any], float]:
                async with http.get(f"{server.url}/readyz") as response:
                    status, body = response.status, json.loads(await response.text())
                async with http.get(f"{server.url}/metrics") as response:
                    metrics = await response.text()
                [gauge] = [ln for ln in metrics.splitlines() if ln.startswith("xresource_resources_pending ")]
                return status, body, float(gauge.split()[1])

            running = registry.get("api")
            (manifests / "api.yaml").write_text(manifest(typo))  # a typo in the secret's path
            result = await registry.reload()
            assert result.rejected == ["api"]
            assert registry.get("api") is running  # the old version keeps serving
            pending = registry.status()["api"].pending or ""
            assert pending.startswith("new version failed to connect: ")
            assert f"'{typo}' does not exist" in pending
            assert registry.status()["api"].pending_changes == (
                f'auth_params: {{"bearer_token": "${{file:{token}}}"}} -> {{"bearer_token": "${{file:{typo}}}"}}',
            )
            status, body, gauge = await probe()
            assert status == 503
            assert body["not_ready"]["api"] == {"state": "pending", "error": pending}
            assert gauge == 1.0
            (manifests / "api.yaml").write_text(manifest(token))  # fixed: back to what runs
            result = await registry.reload()
            assert result.unchanged == ["api"]
            status, body, gauge = await probe()
            assert (status, body["pending"], gauge) == (200, {}, 0.0)
            assert registry.status()["api"].error is None
        finally:
            await server.stop()
    assert "token-one" not in caplog.text


async def test_the_safety_rescan_is_not_a_reload_unless_it_changes_something(
    manifests: Path, data: Path
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        await registry._reload("rescan")  # what the watcher's timeout does
        assert registry.rescans == 1
        assert sum(registry.reload_counts.values()) == 0
        assert registry.last_reload_at is None
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await registry._reload("rescan")
        assert registry.reload_counts["applied"] == 1
        assert registry.last_reload_at is not None


class Recorder(XResource):
    """A test-only type that records ``take_over`` calls (and refuses when told to)."""

    calls: ClassVar[list[tuple[str, str, str]]] = []
    closed: ClassVar[list[int]] = []

    type: Literal["recorder"] = "recorder"
    version: int = 1
    refuse: bool = False

    async def take_over(self, previous: XResource) -> None:
        assert self.state is State.READY, "take_over runs on a connected instance"
        Recorder.calls.append((self.name, f"v{getattr(previous, 'version', '?')}", f"v{self.version}"))
        if self.refuse:
            raise RuntimeError("cannot adopt the old subscriptions")

    async def _disconnect(self) -> None:
        Recorder.closed.append(self.version)


async def test_take_over_runs_before_the_swap_and_a_refusal_keeps_the_old(manifests: Path) -> None:
    ResourceFactory.register("recorder", Recorder)
    Recorder.calls.clear()
    Recorder.closed.clear()
    (manifests / "r.yaml").write_text("name: r\ntype: recorder\nversion: 1\n")
    events: list[ReloadEvent] = []
    async with Registry(manifests, settings=fast_settings()) as registry:
        registry.on_event(events.append)
        first = registry.get("r")
        (manifests / "r.yaml").write_text("name: r\ntype: recorder\nversion: 2\n")
        assert (await registry.reload()).replaced == ["r"]
        second = registry.get("r")
        assert Recorder.calls == [("r", "v1", "v2")]
        (manifests / "r.yaml").write_text("name: r\ntype: recorder\nversion: 3\nrefuse: true\n")
        result = await registry.reload()
        assert result.rejected == ["r"]
        assert registry.get("r") is second
        assert second.state is State.READY
        assert Recorder.calls[-1] == ("r", "v2", "v3")
        pending = registry.status()["r"].pending or ""
        assert pending == "new version failed to take over: RuntimeError: cannot adopt the old subscriptions"
        assert events[-1].kind == "rejected"
        assert events[-1].generation == 3
        assert 3 in Recorder.closed  # the refused version is disconnected at once
        assert 2 not in Recorder.closed
        await registry.wait_closed()
        assert first.state is State.CLOSED
    assert sorted(Recorder.closed) == [1, 2, 3]
