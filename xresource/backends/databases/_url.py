"""Settings shared by the SQL/Mongo backends' connection options.

Connection URLs themselves are parsed by :mod:`xresource._transport.urls`.
"""

from __future__ import annotations

from typing import Any


def reject_managed_options(options: dict[str, Any], managed: set[str], owner: str) -> None:
    """Driver options must not override what the manifest's own fields set."""
    clash = sorted(k for k in options if k in managed or k.lower() in {m.lower() for m in managed})
    if clash:
        raise ValueError(
            f"options {', '.join(map(repr, clash))} are set by this resource's own fields; "
            f"use those fields instead ({owner})"
        )
