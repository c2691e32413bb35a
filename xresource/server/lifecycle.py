"""Starting and stopping a registry inside a web app's lifetime, for every framework integration.

The framework's own hook (aiohttp's ``cleanup_ctx``, Starlette's lifespan) enters
:func:`run_registry`; the probes (``/readyz``) follow the phases it marks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from xresource.registry import Registry
from xresource.server.probes import Phase, RegistryProbes

log = logging.getLogger("xresource.server")


@asynccontextmanager
async def run_registry(
    registry: Registry, probes: RegistryProbes | None, *, background: bool
) -> AsyncIterator[None]:
    """Start ``registry`` (at once, or in the background), yield while the app runs, stop it.

    With ``background`` the app serves while the registry starts; the probes say
    ``starting``, then ``running`` or ``failed`` (a start that raised is logged, not
    raised: the app is already serving).
    """
    _mark(probes, "starting")
    starting: asyncio.Task[None] | None = None
    if background:
        starting = asyncio.create_task(registry.start(), name="xresource-start")
        starting.add_done_callback(lambda task: _started(task, probes))
    else:
        await registry.start()
        _mark(probes, "running")
    try:
        yield
    finally:
        _mark(probes, "stopping")
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        await registry.stop()


def _mark(probes: RegistryProbes | None, phase: Phase) -> None:
    if probes is not None:
        probes.mark(phase)


def _started(task: asyncio.Task[None], probes: RegistryProbes | None) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("the registry did not start: %s", task.exception())
        _mark(probes, "failed")
        return
    _mark(probes, "running")
