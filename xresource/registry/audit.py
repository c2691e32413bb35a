"""Structured audit lines (``[registry] audit_log``): one JSON object per line on ``xresource.audit``."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xresource.registry.entry import Entry

audit_log = logging.getLogger("xresource.audit")


class Audit:
    """Writes connect, disconnect, lease and reload lines when enabled; does nothing otherwise."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def resource(self, event: str, entry: Entry) -> None:
        if self.enabled:
            self._write(
                {
                    "event": event,
                    "resource": entry.resource.name,
                    "type": entry.resource.type,
                    "generation": entry.generation,
                    "leases": entry.leases,
                    "at": time.time(),
                }
            )

    def reload(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            self._write({"event": "reload", **summary, "at": time.time()})

    @staticmethod
    def _write(line: dict[str, Any]) -> None:
        audit_log.info(json.dumps(line, default=str))
