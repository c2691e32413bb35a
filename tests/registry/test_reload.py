"""Hot reload, rule by rule (docs/architecture.md, "Reload rules"), with a real watcher on real files.

Rescanning is off in these settings (``rescan_interval=0``), so a change that
is picked up was seen by the watcher, not by the safety-net rescan.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from tests.registry.support import (
    ApiServer,
    ConfigMapDir,
    csv_manifest,
    eventually,
    fast_settings,
    rest_manifest,
    stays,
    swapped,
    write_atomic,
)
from tests.support.services import free_port
from xresource.errors import XResourceNotFoundError
from xresource.registry import Registry, ReloadEvent
from xresource.resource import State


async def test_unchanged_resources_keep_the_same_instance(
    manifests: Path, data: Path, api: ApiServer
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, settings=fast_settings()) as registry:
        before = {n: registry.get(n) for n in registry.names()}
        await registry.get("api").get("")
        result = await registry.reload()
        assert result.outcome == "unchanged"
        assert sorted(result.unchanged) == ["a", "api", "b"]
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", 'quotechar: "\'"'))
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))  # rewritten, same content
        result = await registry.reload()
        assert result.replaced == ["a"]
        assert sorted(result.unchanged) == ["api", "b"]
        assert registry.get("b") is before["b"]
        assert registry.get("api") is before["api"]
        await registry.get("api").get("")
        assert api.peers[-1] == api.peers[-2]  # the same pooled TCP connection
        assert registry.status()["b"].generation == 1
        assert before["b"].state is State.READY
        assert before["api"].state is State.READY


async def test_changed_resource_is_swapped_with_the_next_generation(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        old = registry.get("a")
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        new = await swapped(registry, "a", old)
        assert new.state is State.READY  # connected before it was swapped in
        assert await new.read() == [{"id": "1", "city": "paris"}]
        assert registry.status()["a"].generation == 2
        await eventually(lambda: old.state is State.CLOSED, what="old instance closed")
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
        await swapped(registry, "a", new)
        assert registry.status()["a"].generation == 3


async def test_new_version_is_connected_before_the_swap(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, watch=True, settings=fast_settings(connect_timeout=5)) as registry:
        old = registry.get("api")
        # The new version's connect check blocks at the server until the test opens the gate.
        (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "health_path: /gate"))
        await eventually(lambda: api.requests == 2, what="new version connecting")
        await stays(lambda: registry.get("api") is old, duration=0.1, what="old instance serves meanwhile")
        assert (await registry.get("api").get(""))["ok"] is True
        api.gate.set()
        new = await swapped(registry, "api", old)
        assert new.health_path == "/gate"


async def test_leased_old_instance_stays_open_until_the_lease_ends(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        async with registry.lease("api") as leased:
            assert registry.status()["api"].leases == 1
            (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "timeout: 7"))
            new = await swapped(registry, "api", leased)
            assert new.timeout == 7
            assert leased.timeout == 30
            # Drained, not closed: the unit of work still completes on the old instance.
            await stays(lambda: leased.state is State.READY, duration=0.15, what="leased instance open")
            assert (await leased.get(""))["ok"] is True
            assert registry.status()["api"].leases == 0  # the status shows the current generation
        await eventually(lambda: leased.state is State.CLOSED, what="old instance closed after the lease")
        assert new.state is State.READY
        await eventually(lambda: api.open_connections <= 1, what="old pool's connection closed")


async def test_drain_timeout_bounds_a_lease_that_never_ends(
    manifests: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings(drain_timeout=0.2)) as registry:
        async with registry.lease("a") as leased:
            (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", 'quotechar: "\'"'))
            await registry.reload()
            await eventually(lambda: leased.state is State.CLOSED, what="closed after drain_timeout")
        assert "still open after drain_timeout=0.2s; closing anyway" in caplog.text


async def test_close_grace_keeps_a_replaced_instance_serving_get_callers(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings(close_grace=0.3)) as registry:
        taken = registry.get("a")  # code that took it just before a swap, without a lease
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", 'quotechar: "\'"'))
        await registry.reload()
        assert registry.get("a") is not taken
        assert len(await taken.read()) == 2  # still usable during the grace period
        await eventually(lambda: taken.state is State.CLOSED, what="closed after the grace")


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        ("name: a\ntype: csv\nfile_path: [\n", "a.yaml:4:1: invalid YAML"),
        ("name: a\ntype: csv\nfile_path: x.csv\nhas_header: maybe\n", "a.yaml:4:13: a: has_header"),
    ],
    ids=["syntax-error", "schema-error"],
)
async def test_invalid_edit_keeps_the_last_good_version(
    manifests: Path, data: Path, broken: str, where: str
) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    events: list[ReloadEvent] = []
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        registry.on_event(events.append)
        a, b = registry.get("a"), registry.get("b")
        (manifests / "a.yaml").write_text(broken)
        error = await eventually(lambda: registry.status()["a"].error, what="error reported")
        assert where in error, error
        assert str(manifests / "a.yaml") in error
        assert registry.get("a") is a
        assert a.state is State.READY
        assert registry.status()["a"].state == "ready"
        assert registry.status()["a"].generation == 1
        assert registry.get("b") is b
        assert registry.status()["b"].error is None
        rejected = [e for e in events if e.kind == "rejected"]
        assert rejected
        assert rejected[0].path == str(manifests / "a.yaml")
        assert where in rejected[0].errors[0]
        # An unrelated edit while the file is broken still applies, and still keeps `a`.
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv", 'quotechar: "\'"'))
        await swapped(registry, "b", b)
        assert registry.get("a") is a
        assert where in (registry.status()["a"].error or "")
        # Fixing the file (back to what runs) clears the error without a swap.
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
        await eventually(lambda: registry.status()["a"].error is None, what="error cleared")
        assert registry.get("a") is a


async def test_a_broken_file_keeps_every_resource_it_defined(manifests: Path, data: Path) -> None:
    two = csv_manifest("a", data / "a.csv") + "---\n" + csv_manifest("b", data / "b.csv")
    (manifests / "two.yaml").write_text(two)
    async with Registry(manifests, settings=fast_settings()) as registry:
        a, b = registry.get("a"), registry.get("b")
        # The second document breaks: the first one's resource must not change either, and
        # the half of the file that still parses must not count as "b removed".
        (manifests / "two.yaml").write_text(
            csv_manifest("a", data / "b.csv") + "---\nname: b\ntype: csv\nfile_path: 5\nbogus: 1\n"
        )
        result = await registry.reload()
        assert result.outcome == "rejected"
        assert sorted(result.rejected) == ["a", "b"]
        assert registry.get("a") is a
        assert registry.get("b") is b
        assert "two.yaml:" in (registry.status()["a"].error or "")


async def test_failed_connect_of_a_new_version_keeps_the_last_good(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    events: list[ReloadEvent] = []
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        registry.on_event(events.append)
        old = registry.get("api")
        dead = f"http://127.0.0.1:{free_port()}"
        (manifests / "api.yaml").write_text(rest_manifest("api", dead))
        error = await eventually(lambda: registry.status()["api"].error, what="rejected new version")
        assert error.startswith("new version not applied:")
        assert "Cannot connect" in error
        assert registry.get("api") is old
        assert registry.status()["api"].state == "ready"
        assert registry.status()["api"].generation == 1
        assert (await registry.get("api").get(""))["ok"] is True
        assert any(e.kind == "rejected" and e.name == "api" and e.generation == 2 for e in events)
        assert registry.reload_counts["rejected"] >= 1
        # Pointing it back clears the error; the instance never changed.
        (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
        await eventually(lambda: registry.status()["api"].error is None, what="error cleared")
        assert registry.get("api") is old


async def test_add_and_remove(manifests: Path, data: Path, api: ApiServer) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        api_instance = registry.get("api")
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
        b = await eventually(lambda: "b" in registry and registry.get("b"), what="b added")
        assert b.state is State.READY
        assert registry.status()["b"].generation == 1
        (manifests / "api.yaml").unlink()
        await eventually(lambda: "api" not in registry, what="api removed")
        with pytest.raises(XResourceNotFoundError):
            registry.get("api")
        await eventually(lambda: api_instance.state is State.CLOSED, what="removed instance closed")
        await eventually(lambda: api.open_connections == 0, what="its connection closed")
        assert registry.names() == ["a", "b"]


async def test_added_resource_that_cannot_connect_is_failed_and_retried(manifests: Path) -> None:
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        server = ApiServer()
        (manifests / "api.yaml").write_text(rest_manifest("api", server.url))
        await eventually(lambda: "api" in registry and registry.status()["api"].state == "failed")
        await server.start()
        try:
            await eventually(lambda: registry.status()["api"].state == "ready", what="retried")
            assert registry.get("api").state is State.READY
        finally:
            await server.stop()


async def test_temp_file_and_rename_saves_are_seen(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        for round_ in range(3):
            old = registry.get("a")
            quote = "'" if round_ % 2 else "|"
            write_atomic(
                manifests / "a.yaml",
                csv_manifest("a", data / "a.csv", f"description: r{round_}", f'quotechar: "{quote}"'),
            )
            new = await swapped(registry, "a", old)
            assert new.description == f"r{round_}"
        # A description-only save is applied to the running instance.
        write_atomic(
            manifests / "a.yaml", csv_manifest("a", data / "a.csv", "description: r3", "quotechar: '|'")
        )
        await eventually(lambda: registry.status()["a"].generation == 5, what="updated in place")
        assert registry.get("a") is new
        assert new.description == "r3"
        assert not (manifests / "a.yaml.tmp").exists()
        assert registry.names() == ["a"]  # the temporary file never became a resource


async def test_an_edit_right_after_start_is_seen(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        old = registry.get("a")
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await swapped(registry, "a", old)


async def test_configmap_style_swap_is_seen(tmp_path: Path, data: Path) -> None:
    volume = ConfigMapDir(tmp_path / "config")
    volume.update({"a.yaml": csv_manifest("a", data / "a.csv")})
    assert (volume.folder / "a.yaml").is_symlink()
    async with Registry(volume.folder, watch=True, settings=fast_settings()) as registry:
        assert registry.names() == ["a"]  # ..data and ..<timestamp> are skipped
        a = registry.get("a")
        volume.update({"a.yaml": csv_manifest("a", data / "b.csv")})
        a2 = await swapped(registry, "a", a)
        assert await a2.read() == [{"id": "1", "city": "paris"}]
        assert registry.status()["a"].path == str(volume.folder / "a.yaml")
        # A second swap (watching a linked file directly would have gone silent by now).
        volume.update(
            {"a.yaml": csv_manifest("a", data / "b.csv"), "b.yaml": csv_manifest("b", data / "a.csv")}
        )
        await eventually(lambda: "b" in registry, what="b added by the second swap")
        assert registry.get("a") is a2  # same content after the swap: untouched
        volume.update({"b.yaml": csv_manifest("b", data / "a.csv")})
        await eventually(lambda: registry.names() == ["b"], what="a removed by the third swap")
        await eventually(lambda: a2.state is State.CLOSED)


async def test_rotated_secret_file_replaces_the_resource(
    tmp_path: Path, manifests: Path, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = tmp_path / "secrets"  # outside the manifests folder, as mounted secrets are
    secrets.mkdir()
    token = secrets / "api-token"
    token.write_text("token-one")
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        old = registry.get("api")
        assert (await old.get(""))["authorization"] == "Bearer token-one"
        token.write_text("token-two")
        new = await swapped(registry, "api", old)
        assert (await new.get(""))["authorization"] == "Bearer token-two"
        assert registry.status()["api"].generation == 2
        write_atomic(token, "token-three")  # rotation by rename, as secret volumes do
        newer = await swapped(registry, "api", new)
        assert (await newer.get(""))["authorization"] == "Bearer token-three"
        # The status and its hash never carry the secret or depend on it.
        text = repr(registry.status())
        assert "token-" not in text
        assert registry.status()["api"].manifest_hash == old.manifest_hash
    assert api.authorizations[-1] == "Bearer token-three"
    assert "token-" not in caplog.text


async def test_secret_file_that_vanishes_keeps_the_last_good(
    tmp_path: Path, manifests: Path, api: ApiServer
) -> None:
    token = tmp_path / "token"
    token.write_text("token-one")
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        old = registry.get("api")
        token.unlink()
        error = await eventually(lambda: registry.status()["api"].error, what="rejected")
        assert "new version not applied" in error
        assert "token-one" not in error
        assert registry.get("api") is old


async def test_vanished_folder_keeps_everything_running(tmp_path: Path, manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        a, b = registry.get("a"), registry.get("b")
        os.rename(manifests, tmp_path / "moved-away")  # an unmounted volume, a deleted checkout
        await eventually(lambda: registry.status()["a"].error, what="problem reported")
        result = await registry.reload()
        assert result.removed == []
        assert result.outcome == "rejected"
        assert registry.get("a") is a
        assert registry.get("b") is b
        assert len(await a.read()) == 2
        assert "manifest folder is missing" in (registry.status()["b"].error or "")
        # The folder comes back: the next reload (SIGHUP, the safety-net rescan) applies it.
        os.rename(tmp_path / "moved-away", manifests)
        result = await registry.reload()
        assert result.removed == []
        assert registry.get("a") is a
        assert registry.status()["a"].error is None
        # ... and the folder is watched again (rescanning is off: only an event can do this).
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await swapped(registry, "a", a)


async def test_events_iterator_and_callbacks(
    manifests: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xresource.registry")
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, watch=True, settings=fast_settings()) as registry:
        stream = registry.events()
        seen: list[ReloadEvent] = []
        unsubscribe = registry.on_event(seen.append)
        # Events from right after subscribing, before the iterator is first awaited, are not lost.
        (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
        await registry.reload()
        added = await asyncio.wait_for(anext(stream), 5)
        assert (added.kind, added.name, added.generation) == ("added", "b", 1)
        assert added.path == str(manifests / "b.yaml")
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        replaced = await asyncio.wait_for(anext(stream), 5)
        assert (replaced.kind, replaced.name, replaced.generation) == ("replaced", "a", 2), (replaced.path, replaced.errors)
        (manifests / "b.yaml").unlink()
        removed = await asyncio.wait_for(anext(stream), 5)
        assert (removed.kind, removed.name) == ("removed", "b"), (removed.path, removed.errors)
        (manifests / "a.yaml").write_text("name: a\ntype: csv\n  bad: [\n")
        rejected = await asyncio.wait_for(anext(stream), 5)
        assert rejected.kind == "rejected"
        assert "a.yaml:" in rejected.errors[0]
        assert [e.kind for e in seen] == ["added", "replaced", "removed", "rejected"]
        unsubscribe()
        (manifests / "c.yaml").write_text(csv_manifest("c", data / "b.csv"))
        # The file is still broken: the same problem is not reported again with every reload.
        late = await asyncio.wait_for(anext(stream), 5)
        assert (late.kind, late.name) == ("added", "c")
        assert len(seen) == 4
        await stream.aclose()
    logged = [r.getMessage() for r in caplog.records if r.name == "xresource.registry"]
    assert any(m.startswith("reload: added b generation=1") for m in logged)
    assert any(m.startswith("reload: replaced a generation=2") for m in logged)
    assert any(m.startswith("reload: removed b") for m in logged)
    assert any(m.startswith("reload: rejected") and "a.yaml" in m for m in logged)


async def test_async_event_callback_is_run(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    got: list[str] = []

    async def callback(event: ReloadEvent) -> None:
        await asyncio.sleep(0)
        got.append(f"{event.kind}:{event.name}")

    def broken(event: ReloadEvent) -> None:
        raise RuntimeError("a buggy subscriber")

    async with Registry(manifests, settings=fast_settings()) as registry:
        registry.on_event(broken)  # must not stop the reload or the other subscribers
        registry.on_event(callback)
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        result = await registry.reload()
        assert result.replaced == ["a"]
        await eventually(lambda: got == ["replaced:a"])


async def test_audit_log_when_enabled(manifests: Path, data: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    caplog.set_level(logging.INFO, logger="xresource.audit")
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings(audit_log=True)) as registry:
        async with registry.lease("a"):
            pass
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await registry.reload()
        await registry.wait_closed()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xresource.audit"]
    summary = [(line["event"], line.get("resource"), line.get("generation")) for line in lines]
    assert summary == [
        ("connect", "a", 1),
        ("lease_open", "a", 1),
        ("lease_close", "a", 1),
        ("connect", "a", 2),
        ("reload", None, None),
        ("disconnect", "a", 1),
        ("disconnect", "a", 2),
    ]
    reload_line = lines[4]
    assert reload_line["replaced"] == ["a"]
    assert reload_line["added"] == []


async def test_no_audit_lines_when_disabled(
    manifests: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        async with registry.lease("a"):
            pass
        (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await registry.reload()
    assert [r for r in caplog.records if r.name == "xresource.audit"] == []


async def test_periodic_rescan_catches_what_no_watch_saw(
    tmp_path: Path, manifests: Path, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The secret's folder does not exist at start, so nothing watches it: only the rescan
    # can see the file appear. After that reload the folder is watched too.
    token = tmp_path / "later" / "token"
    (manifests / "api.yaml").write_text(
        rest_manifest("api", api.url, "connect: lazy", "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(manifests, watch=True, settings=fast_settings(rescan_interval=0.3)) as registry:
        token.parent.mkdir()
        token.write_text("token-one")
        await eventually(lambda: registry.status()["api"].generation == 2, what="rescan applied it")
        api_v2 = await registry.aget("api")
        assert (await api_v2.get(""))["authorization"] == "Bearer token-one"
        caplog.set_level(logging.INFO, logger="xresource.registry")
        caplog.clear()
        token.write_text("token-two")  # now watched: the watcher sees it, not a later rescan
        await eventually(lambda: registry.status()["api"].generation == 3, what="the rotation applied")
        applied = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload after")]
        assert applied[:1] == ["reload after file change: applied"], applied


async def test_reload_while_a_reload_runs_is_serialized(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    async with Registry(manifests, settings=fast_settings()) as registry:
        old = registry.get("api")
        (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "health_path: /gate"))
        first = asyncio.create_task(registry.reload())
        await eventually(lambda: api.requests == 2)
        second = asyncio.create_task(registry.reload())
        # It waits for the first instead of connecting a second copy.
        await stays(lambda: not second.done(), duration=0.05, what="the second reload waits")
        api.gate.set()
        r1, r2 = await asyncio.gather(first, second)
        assert r1.replaced == ["api"]
        assert r2.outcome == "unchanged"
        assert registry.status()["api"].generation == 2
        assert registry.get("api") is not old


async def test_renamed_file_keeps_the_instance_and_its_new_path(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        a = registry.get("a")
        os.rename(manifests / "a.yaml", manifests / "users.yaml")  # `git mv`: same content, new name
        result = await registry.reload()
        assert result.outcome == "unchanged"
        assert registry.get("a") is a
        assert registry.status()["a"].path == str(manifests / "users.yaml")
        # The renamed file breaks: `a` is kept (it is known to come from that file), not removed.
        (manifests / "users.yaml").write_text("name: a\ntype: csv\nfile_path: [\n")
        result = await registry.reload()
        assert result.removed == []
        assert registry.get("a") is a
        assert "users.yaml:4:1" in (registry.status()["a"].error or "")


async def test_reload_needs_a_started_registry(manifests: Path, data: Path) -> None:
    from xresource.errors import XResourceStateError

    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    registry = Registry(manifests, settings=fast_settings())
    with pytest.raises(XResourceStateError, match="not started"):
        await registry.reload()
    assert registry.names() == []  # nothing was connected behind the caller's back
    async with registry:
        pass
    with pytest.raises(XResourceStateError, match="not started"):
        await registry.reload()


async def test_stop_during_a_reload_leaks_nothing(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url))
    registry = Registry(manifests, settings=fast_settings())
    await registry.start()
    old = registry.get("api")
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "health_path: /gate"))
    (manifests / "more.yaml").write_text(rest_manifest("more", api.url))
    reload = asyncio.create_task(registry.reload())
    await eventually(lambda: api.requests >= 3, what="new versions connecting")
    stopping = asyncio.create_task(registry.stop())
    await asyncio.sleep(0)  # one turn of the loop: stop() runs up to the reload lock, held by the reload
    api.gate.set()
    await asyncio.gather(reload, stopping, return_exceptions=True)
    assert registry.names() == []
    assert old.state is State.CLOSED
    await eventually(lambda: api.open_connections == 0, what="every connection closed")


async def test_an_edit_during_a_slow_start_is_seen(manifests: Path, data: Path, api: ApiServer) -> None:
    (manifests / "slow.yaml").write_text(rest_manifest("slow", api.url, "health_path: /gate"))
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    registry = Registry(manifests, watch=True, settings=fast_settings(connect_timeout=5))
    starting = asyncio.create_task(registry.start())
    await eventually(lambda: api.requests == 1, what="start is connecting")
    # Edited while start runs: the kernel queues the event for a watch armed before this write.
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
    api.gate.set()
    await starting
    try:
        # No further event comes and rescanning is off: only the watcher armed early sees it.
        await eventually(lambda: registry.status()["a"].generation == 2, what="the edit made during start")
        assert await registry.get("a").read() == [{"id": "1", "city": "paris"}]
    finally:
        await registry.stop()


async def test_lazy_resource_replaced_while_connecting(manifests: Path, api: ApiServer) -> None:
    (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "connect: lazy", "health_path: /gate"))
    async with Registry(manifests, settings=fast_settings(connect_timeout=5)) as registry:
        getting = asyncio.create_task(registry.aget("api"))

        async def use_lease() -> str:
            async with registry.lease("api") as leased:
                return leased.description

        leasing = asyncio.create_task(use_lease())
        await eventually(lambda: api.requests == 1, what="lazy connect started")
        (manifests / "api.yaml").write_text(rest_manifest("api", api.url, "connect: lazy", "description: v2"))
        result = await registry.reload()
        assert result.replaced == ["api"]
        api.gate.set()
        # The callers waiting on the old version get the new one, not a CancelledError.
        got = await asyncio.wait_for(getting, 5)
        assert got is registry.get("api")
        assert got.description == "v2"
        assert await asyncio.wait_for(leasing, 5) == "v2"
