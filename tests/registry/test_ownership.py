"""Everything the registry starts it owns: ``stop()`` leaves no task and no thread behind.

And the watcher keeps to a thread of its own: an application's ``asyncio.to_thread``
never waits because registries are watching (the default executor is small on a
small machine: 6 workers on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.registry.support import ApiServer, csv_manifest, eventually, fast_settings, rest_manifest
from xresource.errors import XResourceStateError
from xresource.registry import Registry, ReloadEvent


def _watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "xresource-watcher"]


async def test_stop_cancels_and_awaits_every_task_it_started(
    manifests: Path, data: Path, api: ApiServer
) -> None:
    unreachable = ApiServer()  # never started: its resource fails and is retried in the background
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    (manifests / "down.yaml").write_text(rest_manifest("down", unreachable.url))
    (manifests / "lazy.yaml").write_text(
        rest_manifest("lazy", api.url, "connect: lazy", "health_path: /gate")
    )
    before = asyncio.all_tasks()
    registry = Registry(manifests, watch=True, settings=fast_settings(rescan_interval=60, health_interval=30))
    await registry.start()
    registry.install_signal_handlers()
    blocked = asyncio.Event()

    async def slow_subscriber(event: ReloadEvent) -> None:
        blocked.set()
        await asyncio.Event().wait()  # an async callback that never ends by itself

    registry.on_event(slow_subscriber)
    lazy = asyncio.create_task(registry.aget("lazy"))  # a background connect, held at the gate
    await eventually(lambda: api.requests == 1, what="lazy connect in flight")
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    await eventually(lambda: blocked.is_set(), what="the watcher's reload ran the callback")
    os.kill(os.getpid(), signal.SIGHUP)  # a reload from the signal, in flight or done
    await eventually(lambda: registry.status()["down"].state == "failed", what="retrying")
    assert len(_watcher_threads()) >= 1
    await registry.stop()
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    with pytest.raises((asyncio.CancelledError, XResourceStateError, Exception)):
        await lazy
    # The test's REST server still handles the gated request; that task is the server's.
    server_side = {t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("RequestHandler.")}
    left = {
        t for t in asyncio.all_tasks() - server_side if t not in before and t is not asyncio.current_task()
    }
    assert left == set(), sorted(t.get_name() for t in left)
    assert _watcher_threads() == []


async def test_get_after_stop_says_the_registry_is_stopped(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        assert registry.get("a") is not None
    with pytest.raises(XResourceStateError, match="is stopped"):
        registry.get("a")
    with pytest.raises(XResourceStateError, match="is stopped"):
        await registry.aget("a")


async def test_get_stays_a_lookup_in_c(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        # A bound dict.__getitem__: no Python frame between the caller and the lookup.
        assert type(registry.get) is type({}.__getitem__)
        assert registry.get.__self__ is registry._ready


def _watching(folder: Path, data: Path, index: int) -> Registry:
    sub = folder / f"r{index}"
    sub.mkdir()
    (sub / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    return Registry(sub, watch=True, settings=fast_settings(rescan_interval=60))


async def test_watching_registries_leave_the_default_executor_to_the_app(manifests: Path, data: Path) -> None:
    workers = 4
    executor = ThreadPoolExecutor(max_workers=workers)
    asyncio.get_running_loop().set_default_executor(executor)
    registries = [_watching(manifests, data, i) for i in range(workers + 2)]
    try:
        for registry in registries:
            await registry.start()
        # Every worker of the default executor must be free: each call waits until all of them
        # run at once (the barrier's timeout is a hang guard, not a measurement).
        barrier = threading.Barrier(workers, timeout=20)
        assert await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(workers))) is not None
        assert len(_watcher_threads()) == len(registries)
    finally:
        for registry in registries:
            await registry.stop()


@pytest.mark.timeout(60)
async def test_ten_registries_started_one_after_another_all_start(manifests: Path, data: Path) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
    registries = [_watching(manifests, data, i) for i in range(10)]
    try:
        for registry in registries:
            await asyncio.wait_for(registry.start(), 20)  # a hang guard
            assert registry.ready
        # Each one still sees its folder.
        (manifests / "r9" / "a.yaml").write_text(csv_manifest("a", data / "b.csv"))
        await eventually(lambda: registries[9].status()["a"].generation == 2, what="the last one reloads")
    finally:
        for registry in registries:
            await registry.stop()
