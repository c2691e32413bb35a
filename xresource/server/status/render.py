"""The status page as HTML: every piece of text goes through ``esc`` (names, errors, paths, tags).

The page is rendered whole for ``GET /``; the live parts (summary, rows, filter
options, timeline) are also rendered alone as "fragments" that the script swaps
in from the event stream. What it shows comes from the registry as it is:
``ResourceStatus`` (``pending``: why the files' version is not the one running;
``pending_changes``: its ``field: old -> new`` lines, secrets as references;
``path`` and ``line``), ``ReloadEvent`` (``changes``: :class:`FieldChange`
values, ``secrets_rotated``) and ``Registry.last_reload_error``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from xresource.registry import Registry, ReloadEvent, ResourceStatus
from xresource.registry.diff import FieldChange
from xresource.server.status.history import POOL_FIGURES, STREAM_COUNTERS, StatusHistory

STATES = ("new", "connecting", "ready", "reconnecting", "failed", "draining", "closed")
GOOD, BAD = {"ready"}, {"failed", "closed"}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class Filters:
    tag: str = ""
    type: str = ""
    state: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        return cls(*(str(query.get(key, ""))[:100] for key in ("tag", "type", "state")))

    def hides(self, status: ResourceStatus) -> bool:
        return (
            (bool(self.tag) and self.tag not in status.tags)
            or (bool(self.type) and status.type != self.type)
            or (bool(self.state) and status.state != self.state)
        )


class StatusView:
    """A snapshot of one registry, rendered."""

    def __init__(self, registry: Registry, history: StatusHistory, prefix: str) -> None:
        self.registry = registry
        self.history = history
        self.prefix = prefix
        self.statuses = registry.status()

    # ---- whole page -----------------------------------------------------------------------

    def page(self, filters: Filters) -> str:
        p = esc(self.prefix)
        parts = self.fragments(filters)
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xresource status</title>
<link rel="stylesheet" href="{p}/status/static/status.css">
<script src="{p}/status/static/status.js" defer></script>
<noscript><meta http-equiv="refresh" content="10"></noscript>
</head>
<body data-events="{p}/status/events" data-refresh="{p}/status/fragments">
<a class="skip" href="#resources-heading">Skip to resources</a>
<header>
<h1>xresource status</h1>
<p id="summary" role="status">{parts["summary"]}</p>
<p id="live" aria-live="polite">Updates: page loaded {esc(_clock(None))} UTC</p>
</header>
<main>
<section aria-labelledby="filters-heading">
<h2 id="filters-heading">Filters</h2>
<form id="filters" method="get" action="{p}/">
<div id="filter-options">{parts["filter-options"]}</div>
<button type="submit">Apply</button>
<a href="{p}/">Clear</a>
<span id="shown">{parts["shown"]}</span>
</form>
</section>
<section aria-labelledby="resources-heading">
<h2 id="resources-heading" tabindex="-1">Resources</h2>
<div class="scroll">
<table id="resources">
<thead><tr>
<th scope="col">Name</th><th scope="col">Type</th><th scope="col">Tags</th><th scope="col">State</th>
<th scope="col">Generation</th><th scope="col">Manifest</th><th scope="col">Connected since</th>
<th scope="col">Figures (last minutes)</th><th scope="col">Last error</th>
</tr></thead>
<tbody id="rows">{parts["rows"]}</tbody>
</table>
</div>
</section>
<section aria-labelledby="timeline-heading">
<h2 id="timeline-heading">Reloads, newest first</h2>
<ol id="timeline">{parts["timeline"]}</ol>
</section>
</main>
</body>
</html>
"""

    def fragments(self, filters: Filters) -> dict[str, str]:
        """The live parts of the page, each as HTML."""
        shown = sum(1 for s in self.statuses.values() if not filters.hides(s))
        return {
            "summary": self._summary(),
            "filter-options": self._filter_options(filters),
            "shown": esc(f"showing {shown} of {len(self.statuses)}"),
            "rows": "".join(self._row(s, filters) for s in self.statuses.values())
            or '<tr><td colspan="9">No resources.</td></tr>',
            "timeline": "".join(_event(e) for e in self.history.timeline) or "<li>No reloads yet.</li>",
        }

    # ---- parts ----------------------------------------------------------------------------

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[status.state] = counts.get(status.state, 0) + 1
        text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        ready = "ready" if self.registry.ready else "not ready"
        summary = esc(f"{len(self.statuses)} resources ({text or 'none'}); the registry is {ready}.")
        failed = self.registry.last_reload_error
        if failed:  # a reload that failed as a whole: nothing of it was applied
            summary += f' <span class="pending"><b>last reload failed</b>: {esc(failed)}</span>'
        return summary

    def _filter_options(self, filters: Filters) -> str:
        tags = sorted({t for s in self.statuses.values() for t in s.tags} | _nonempty(filters.tag))
        types = sorted({s.type for s in self.statuses.values()} | _nonempty(filters.type))
        states = list(STATES) + ([filters.state] if filters.state and filters.state not in STATES else [])
        return (
            _select("tag", "Tag", tags, filters.tag)
            + _select("type", "Type", types, filters.type)
            + _select("state", "State", states, filters.state)
        )

    def _row(self, status: ResourceStatus, filters: Filters) -> str:
        name = status.name
        hidden = " hidden" if filters.hides(status) else ""
        tags = json.dumps(list(status.tags))
        tag_list = "".join(f'<span class="tag">{esc(t)}</span> ' for t in status.tags) or "-"
        href = f"{self.prefix}/resources/{quote(name, safe='')}"
        state_class = "good" if status.state in GOOD else "bad" if status.state in BAD else "warn"
        pending = _pending(status.pending, status.pending_changes)
        if status.connect_mode == "lazy" and status.state == "new":
            pending = '<div class="detail">lazy: connects on first use</div>' + pending
        where = esc(status.path or "-") + (f":{esc(status.line)}" if status.path and status.line else "")
        since = esc(_clock(status.since)) if status.state == "ready" else "-"
        error = f'<pre class="error">{esc(status.error)}</pre>' if status.error else "-"
        description = status.metadata.get("description")
        target = status.metadata.get("target")
        detail = "".join(
            f'<div class="detail">{esc(text)}</div>'
            for text in (description, target)
            if isinstance(text, str)
        )
        return (
            f'<tr data-name="{esc(name)}" data-type="{esc(status.type)}" data-state="{esc(status.state)}" '
            f'data-tags="{esc(tags)}"{hidden}>'
            f'<th scope="row"><a href="{esc(href)}" aria-label="{esc(name)} as JSON">{esc(name)}</a>{detail}</th>'
            f"<td>{esc(status.type)}</td>"
            f"<td>{tag_list}</td>"
            f'<td><span class="state {state_class}">{esc(status.state)}</span>{pending}</td>'
            f'<td class="num">{esc(status.generation)}</td>'
            f'<td class="path">{where}</td>'
            f"<td>{since}</td>"
            f"<td>{self._figures(name, status)}</td>"
            f"<td>{error}</td>"
            "</tr>"
        )

    def _figures(self, name: str, status: ResourceStatus) -> str:
        parts: list[str] = []
        pool = status.metadata.get("pool")
        if isinstance(pool, dict):
            for key in POOL_FIGURES:
                if key in pool:
                    series = self.history.series(name, key)
                    parts.append(_figure(key.replace("_", " "), pool[key], series, "connections"))
        stream = status.metadata.get("stream")
        if isinstance(stream, dict):
            for key in STREAM_COUNTERS:
                if key in stream:
                    series = self.history.series(name, key)
                    parts.append(_figure(key, stream[key], series, "messages per second"))
        return "".join(parts) or "-"


def _nonempty(value: str) -> set[str]:
    return {value} if value else set()


def _select(name: str, label: str, options: Iterable[str], chosen: str) -> str:
    items = ['<option value="">any</option>'] + [
        f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}</option>' for o in options
    ]
    return f'<label>{esc(label)} <select name="{name}" id="filter-{name}">{"".join(items)}</select></label> '


def _figure(label: str, value: object, series: Sequence[float], unit: str) -> str:
    return f'<div class="figure"><span>{esc(label)}: <b>{esc(value)}</b></span>{sparkline(series, label, unit)}</div>'


def sparkline(values: Sequence[float], label: str, unit: str, width: int = 96, height: int = 20) -> str:
    """A small inline SVG line of ``values`` (oldest first), with a text equivalent."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values)
    )
    summary = f"{label} ({unit}) over the last {len(values)} samples: low {min(values):g}, high {max(values):g}, now {values[-1]:g}"
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(summary)}"><title>{esc(summary)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def _pending(reason: str | None, changes: Sequence[str]) -> str:
    """A pending (desired, not running) version: why, and its ``field: old -> new`` lines."""
    if reason is None:
        return ""
    return f'<div class="pending"><b>pending</b>: {esc(reason)}{_change_list(changes)}</div>'


def _event_changes(changes: Sequence[FieldChange], rotated: Sequence[str]) -> str:
    """An event's changed fields (values as JSON, cut to 200 characters) and rotated secrets."""
    return _change_list([c.describe(limit=200) for c in changes] + [f"secret {r} rotated" for r in rotated])


def _change_list(lines: Sequence[str]) -> str:
    """``field: old -> new`` lines (as the registry writes them: secrets as references), the field in code."""
    items: list[str] = []
    for line in lines:
        field, sep, rest = line.partition(": ")
        if sep and " " not in field:
            items.append(f"<li><code>{esc(field)}</code>: {esc(rest)}</li>")
        else:  # "secret ${file:...} rotated"
            items.append(f"<li>{esc(line)}</li>")
    return f'<ul class="changes">{"".join(items)}</ul>' if items else ""


def _event(event: ReloadEvent) -> str:
    kind = event.kind
    cls = (
        "good"
        if kind in ("added", "replaced", "updated", "recovered")
        else "bad"
        if kind in ("rejected", "failed")
        else "warn"
    )
    parts = [
        f'<time datetime="{esc(_iso(event.at))}">{esc(_clock(event.at))}</time>',
        f'<span class="kind {cls}">{esc(kind)}</span>',
        f"<b>{esc(event.name or '(file)')}</b>",
    ]
    if event.generation is not None:
        parts.append(f"generation {esc(event.generation)}")
    if event.path:
        parts.append(f'<span class="path">{esc(event.path)}</span>')
    body = " ".join(parts)
    body += _event_changes(event.changes, event.secrets_rotated)
    if event.errors:
        body += "".join(f'<pre class="error">{esc(e)}</pre>' for e in event.errors)
    return f'<li class="event" data-kind="{esc(kind)}">{body}</li>'


def _iso(at: float | None) -> str:
    return dt.datetime.fromtimestamp(at or 0, dt.UTC).isoformat(timespec="seconds")


def _clock(at: float | None) -> str:
    moment = dt.datetime.now(dt.UTC) if at is None else dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
