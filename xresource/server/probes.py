"""What the health, readiness, resources and metrics routes answer, for any web framework.

``RegistryProbes`` holds the answers' logic; ``xresource serve`` and the
integrations (``xresource.integrations.aiohttp``, ``xresource.integrations.starlette``)
only turn its :class:`Answer` into their framework's response, so every
mount answers the same.

Readiness has a phase besides the resources' states: ``starting`` until the
registry's first connect round is over (liveness answers from the first
moment, readiness says 503 "starting"), ``running``, then ``stopping`` once
shutdown began (503, so a load balancer stops sending work before the
resources close). ``failed`` is for a registry started in the background
whose start raised (an invalid folder).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from xresource.registry import Registry, ReloadResult
from xresource.server.metrics import RegistryCollector

Phase = Literal["starting", "running", "stopping", "failed"]
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer before a framework renders it: a status and a JSON body."""

    status: int
    body: dict[str, Any]

    def json(self) -> str:
        return dumps(self.body)


def dumps(value: object) -> str:
    """JSON for the routes (timestamps and paths as strings)."""
    return json.dumps(value, default=str)


class RegistryProbes:
    """Liveness, readiness, resources and metrics of one registry.

    ``phase`` starts as given; the lifecycle helpers (``serve``, the aiohttp
    cleanup context, the Starlette lifespan) move it along. When nobody manages
    it (``phase=None``), a registry that has been started counts as running.
    """

    def __init__(self, registry: Registry, *, phase: Phase | None = None) -> None:
        self.registry = registry
        self._phase = phase
        self.metrics_registry = CollectorRegistry(auto_describe=False)
        self.metrics_registry.register(RegistryCollector(registry))

    @property
    def phase(self) -> Phase:
        if self._phase is not None:
            return self._phase
        started = getattr(self.registry, "started", None)
        if started is None:
            started = getattr(self.registry, "_started", True)
        return "running" if started else "starting"

    def mark(self, phase: Phase) -> None:
        self._phase = phase

    def liveness(self) -> Answer:
        """200 while the process and its event loop answer (whatever the resources do)."""
        return Answer(200, {"status": "ok", "time": time.time()})

    def readiness(self) -> Answer:
        """200 when running and every eager resource is ready; 503 otherwise, saying why.

        Desired versions that are not running (a change that failed to apply, a failed
        reload) are always shown under ``pending``; they fail readiness only with
        ``[registry] ready_requires_applied``.
        """
        registry = self.registry
        phase = self.phase
        not_ready = {
            name: {"state": s.state, "error": s.error}
            for name, s in registry.status().items()
            if s.state != "ready" and not (s.connect_mode == "lazy" and s.state == "new")
        }
        pending = registry.pending
        if registry.settings.registry.ready_requires_applied:
            for name, reason in pending.items():
                not_ready.setdefault(name, {"state": "pending", "error": reason})
        ready = phase == "running" and not not_ready
        status = phase if phase != "running" else ("ready" if ready else "not_ready")
        body = {
            "status": status,
            "ready": ready,
            "not_ready": not_ready,
            "pending": pending,
            "reload_error": registry.last_reload_error,
        }
        return Answer(200 if ready else 503, body)

    def resources(self) -> Answer:
        """Every resource's status (no secrets: ``status()`` never holds one)."""
        data = [s.as_dict() for s in self.registry.status().values()]
        return Answer(200, {"resources": data, "count": len(data)})

    def resource(self, name: str) -> Answer:
        """One resource's status, or 404."""
        status = self.registry.status().get(name)
        if status is None:
            return Answer(404, {"error": "no resource with that name"})
        return Answer(200, status.as_dict())

    def metrics(self) -> bytes:
        """Prometheus text exposition (``METRICS_CONTENT_TYPE``)."""
        return generate_latest(self.metrics_registry)


def reload_answer(result: ReloadResult) -> Answer:
    return Answer(
        200,
        {
            "outcome": result.outcome,
            "added": result.added,
            "replaced": result.replaced,
            "updated": result.updated,
            "removed": result.removed,
            "rejected": result.rejected,
            "problems": [str(p) for p in result.problems],
        },
    )


def clean_prefix(prefix: str) -> str:
    """``""``, ``"/"`` -> ``""``; ``"/ops"`` stays; anything else is a ``ValueError``."""
    prefix = prefix.strip()
    if prefix in ("", "/"):
        return ""
    if not prefix.startswith("/") or prefix.endswith("/") or "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must look like '/ops' (a leading slash, none at the end), got {prefix!r}")
    return prefix
