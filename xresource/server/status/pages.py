"""Framework-free answers of the status routes: the page, its fragments, its two static files."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from xresource.registry import Registry
from xresource.server.status.history import StatusHistory
from xresource.server.status.render import Filters, StatusView

# The page loads nothing from elsewhere and runs no inline script: say so to the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"status.css": "text/css; charset=utf-8", "status.js": "text/javascript; charset=utf-8"}


def page_html(registry: Registry, history: StatusHistory, prefix: str, query: dict[str, str]) -> str:
    history.sample_if_due()
    return StatusView(registry, history, prefix).page(Filters.from_query(query))


def fragments_json(registry: Registry, history: StatusHistory, prefix: str) -> str:
    history.sample_if_due()
    return json.dumps(StatusView(registry, history, prefix).fragments(Filters()))


@cache
def static_file(name: str) -> bytes | None:
    """``status.css`` or ``status.js`` from the package; None for any other name."""
    if name not in STATIC_TYPES:
        return None
    return resources.files("xresource.server.status").joinpath("static", name).read_bytes()
