"""One running version of a resource: its instance, state, leases and retry task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from xresource.errors import XResourceConnectionError, XResourceError
from xresource.resource import State, XResource

log = logging.getLogger("xresource.registry")


class Entry:
    """A resource instance as the registry runs it (one per generation)."""

    __slots__ = (
        "_idle",
        "connect_task",
        "current",
        "error",
        "generation",
        "leases",
        "ready_map",
        "resource",
        "retry_task",
        "since",
        "state",
    )

    def __init__(self, resource: XResource, generation: int) -> None:
        self.resource = resource
        self.generation = generation
        self.state = State.NEW
        self.error: str | None = None
        self.leases = 0
        self.since = time.time()
        self.retry_task: asyncio.Task[None] | None = None
        self.connect_task: asyncio.Task[bool] | None = None
        self._idle: asyncio.Event | None = None
        # The registry's name -> resource map of ready, current instances, which makes
        # ``Registry.get`` a single dict lookup. Kept in step with ``state`` here.
        self.ready_map: dict[str, XResource] | None = None
        self.current = False

    def set_state(self, state: State, error: str | None = None) -> None:
        if state is not self.state:
            self.since = time.time()
        self.state = state
        self.error = error
        self.publish()

    def publish(self) -> None:
        """Show (or hide) this instance in the registry's ready map."""
        ready_map = self.ready_map
        if ready_map is None:
            return
        name = self.resource.name
        if self.current and self.state is State.READY:
            ready_map[name] = self.resource
        elif ready_map.get(name) is self.resource:
            del ready_map[name]

    def make_current(self, ready_map: dict[str, XResource]) -> None:
        self.ready_map = ready_map
        self.current = True
        self.publish()

    def retire(self) -> None:
        """No longer the instance ``get`` returns (replaced or removed)."""
        self.current = False
        self.publish()

    # ---- connecting ---------------------------------------------------------------------------

    async def connect(self, timeout: float) -> bool:
        """Connect (or, if the driver is still connected, health-check) within ``timeout``.

        Records the outcome in ``state``/``error``; never raises ``XResourceError``.
        """
        resource = self.resource
        self.set_state(State.CONNECTING, self.error)
        try:
            if resource.state is State.READY:
                # The driver is connected (pools heal by themselves): just check it answers.
                ok = await asyncio.wait_for(resource.validate_connection(), timeout)
                if not ok:
                    raise XResourceConnectionError(
                        resource.last_error or f"{resource.label}: health check failed"
                    )
            else:
                if resource.state is State.FAILED:
                    await resource.disconnect()  # drop what a gave-up client left behind
                await asyncio.wait_for(resource.connect(), timeout)
        except TimeoutError:
            where = f" at {resource.target()}" if resource.target() else ""
            self.set_state(
                State.FAILED, f"{resource.label}{where}: connect did not finish within {timeout:g}s"
            )
            return False
        except XResourceError as exc:
            self.set_state(State.FAILED, str(exc))
            return False
        except Exception as exc:  # a backend bug must not take the registry down
            log.exception("%s: unexpected error while connecting", resource.label)
            self.set_state(
                State.FAILED, f"{resource.label}: {type(exc).__name__}: {resource.scrub(str(exc))}"
            )
            return False
        self.set_state(State.READY)
        return True

    def ensure_connecting(self, timeout: float) -> asyncio.Task[bool]:
        """Start (or join) a connect for a lazy resource."""
        if self.connect_task is None or self.connect_task.done():
            self.connect_task = asyncio.create_task(
                self.connect(timeout), name=f"connect-{self.resource.name}"
            )
        return self.connect_task

    async def wait_connected(self, timeout: float) -> None:
        ok = await self.ensure_connecting(timeout)
        if not ok:
            raise XResourceConnectionError(self.error or f"{self.resource.label} failed to connect")

    # ---- leases and draining ------------------------------------------------------------------

    def acquire(self) -> None:
        self.leases += 1

    def release(self) -> None:
        self.leases -= 1
        if self.leases == 0 and self._idle is not None:
            self._idle.set()

    async def drain(self, timeout: float, grace: float) -> bool:
        """Wait for open leases (bounded by ``timeout``) and a grace period; True if all ended."""
        self.set_state(State.DRAINING, self.error)
        drained = True
        if self.leases:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                drained = False
                log.warning(
                    "%s generation %d: %d lease(s) still open after drain_timeout=%gs; closing anyway",
                    self.resource.label,
                    self.generation,
                    self.leases,
                    timeout,
                )
        if grace > 0:
            await asyncio.sleep(grace)
        return drained

    async def close(self) -> None:
        self.cancel_tasks()
        try:
            await self.resource.disconnect()
        except XResourceError as exc:
            log.warning("%s: disconnect failed: %s", self.resource.label, exc)
        except Exception:
            log.exception("%s: unexpected error while disconnecting", self.resource.label)
        self.set_state(State.CLOSED, self.error)

    def cancel_tasks(self) -> None:
        for task in (self.retry_task, self.connect_task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()

    async def wait_tasks(self) -> None:
        for task in (self.retry_task, self.connect_task):
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
