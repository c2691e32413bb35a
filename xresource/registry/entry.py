"""One running version of a resource: its instance, state, leases, what it was built from."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from xresource.errors import XResourceConnectionError, XResourceError, XResourceStateError
from xresource.registry.diff import Version, shown
from xresource.registry.tasks import TaskSet
from xresource.resource import State, XResource

log = logging.getLogger("xresource.registry")


class Entry:
    """A resource instance as the registry runs it (one per generation)."""

    __slots__ = (
        "_idle",
        "_shown",
        "connect_task",
        "current",
        "error",
        "generation",
        "leases",
        "pending",
        "pending_changes",
        "ready_map",
        "resource",
        "retry_task",
        "since",
        "state",
        "tasks",
        "version",
    )

    def __init__(self, resource: XResource, generation: int, version: Version, tasks: TaskSet) -> None:
        self.resource = resource
        self.generation = generation
        self.version = version
        """What this instance was built from (compared with the files on every reload)."""
        self.tasks = tasks
        """The registry's task owner: a lazy connect runs there, so ``stop()`` awaits it."""
        self.pending: str | None = None
        """Why the files' version of this name is not the one running (None: it is)."""
        self.pending_changes: tuple[str, ...] = ()
        """What that version would change (``field: old -> new``)."""
        self._shown: dict[str, Any] | None = None
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
            # asyncio.timeout, not wait_for: no extra task per connect (10,000 resources start).
            async with asyncio.timeout(timeout):
                if resource.state is State.READY:
                    # The driver is connected (pools heal by themselves): just check it answers.
                    ok = await resource.validate_connection()
                    if not ok:
                        raise XResourceConnectionError(
                            resource.last_error or f"{resource.label}: health check failed"
                        )
                else:
                    if resource.state is State.FAILED:
                        await resource.disconnect()  # drop what a gave-up client left behind
                    await resource.connect()
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
            self.connect_task = self.tasks.spawn(self.connect(timeout), name=f"connect-{self.resource.name}")
        return self.connect_task

    async def wait_connected(self, timeout: float) -> None:
        ok = await self.ensure_connecting(timeout)
        if not ok:
            raise XResourceConnectionError(self.error or f"{self.resource.label} failed to connect")

    async def ensure_lazy_connected(self, timeout: float) -> None:
        """Connect a lazy (or failed, not retrying) version now; join a connect in flight."""
        if self.state in (State.NEW, State.CONNECTING) or (
            self.state is State.FAILED and self.retry_task is None
        ):
            await self.wait_connected(timeout)

    def not_ready_error(self) -> XResourceConnectionError | XResourceStateError:
        """What ``get()`` raises for this version while it is not ready."""
        resource = self.resource
        if self.state is State.NEW and resource.connect_mode == "lazy":
            return XResourceStateError(
                f"{resource.label} connects lazily and is not connected yet; "
                f"use `await registry.aget({resource.name!r})` or `registry.lease(...)`"
            )
        detail = self.error or f"state is {self.state.value}"
        return XResourceConnectionError(f"{resource.label} is not ready ({self.state.value}): {detail}")

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
        """Stop this version's retry and connect (the task owner awaits them)."""
        for task in (self.retry_task, self.connect_task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()

    # ---- what it was built from ---------------------------------------------------------------

    def set_pending(self, reason: str | None, changes: tuple[str, ...] = ()) -> None:
        self.pending = reason
        self.pending_changes = changes if reason is not None else ()

    def rebind(self, version: Version) -> None:
        """The same instance now stands for ``version`` (a renamed file, a live update)."""
        self.version = version
        self._shown = None

    @property
    def shown_fields(self) -> dict[str, Any]:
        """The manifest's fields as written, safe to show (secrets as their references)."""
        if self._shown is None:
            fields = self.version.fields or {}
            self._shown = {str(k): shown(v, str(k)) for k, v in fields.items()}
        return self._shown


class ReadyMap(dict[str, XResource]):
    """name -> ready, current instance; a missing name asks ``fallback`` (which raises why).

    ``Registry.get`` is this dict's own ``__getitem__`` (C, no Python frame). An override
    (a test's fake) is a value in the same dict, so ``get`` stays that lookup: while a name
    is overridden, the entries' own writes for it (a reload's swap, a state change) are
    ignored, and :meth:`pop_override` restores what they say.
    """

    __slots__ = ("_fallback", "_overrides")

    def __init__(self, fallback: Callable[[str], XResource]) -> None:
        super().__init__()
        self._fallback = fallback
        self._overrides: dict[str, list[tuple[object, Any]]] = {}

    def __missing__(self, name: str) -> XResource:
        return self._fallback(name)

    def __setitem__(self, name: str, resource: XResource) -> None:
        if name not in self._overrides:
            dict.__setitem__(self, name, resource)

    def __delitem__(self, name: str) -> None:
        if name not in self._overrides:
            dict.__delitem__(self, name)

    def push_override(self, name: str, fake: Any) -> object:
        """Show ``fake`` for ``name`` until :meth:`pop_override` with the returned token."""
        token = object()
        self._overrides.setdefault(name, []).append((token, fake))
        dict.__setitem__(self, name, fake)
        return token

    def pop_override(self, name: str, token: object) -> bool:
        """End one override (in any order); True when ``name`` is no longer overridden."""
        stack = self._overrides.get(name, [])
        stack[:] = [item for item in stack if item[0] is not token]
        if stack:
            dict.__setitem__(self, name, stack[-1][1])
            return False
        self._overrides.pop(name, None)
        dict.pop(self, name, None)  # the caller shows the entry's instance again, if ready
        return True

    def override_of(self, name: str) -> tuple[bool, Any]:
        """``(True, fake)`` while ``name`` is overridden, else ``(False, None)``."""
        stack = self._overrides.get(name)
        return (True, stack[-1][1]) if stack else (False, None)
