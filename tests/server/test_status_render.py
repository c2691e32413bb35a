"""Rendering of what the registry may report later (pending versions, changed fields) and of
hostile text, without a browser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.registry.support import csv_manifest, fast_settings
from xresource.registry import Registry, ReloadEvent
from xresource.server.status.history import StatusHistory
from xresource.server.status.render import Filters, StatusView, _changes, _event, _pending, sparkline


@dataclass
class Pending:
    reason: str
    changes: dict[str, tuple[str, str]]


def test_pending_renders_reason_and_diff_escaped_in_every_shape() -> None:
    as_object = _pending(Pending("connect failed: <b>refused</b>", {"host": ("db1", "<db2>")}))
    assert "connect failed: &lt;b&gt;refused&lt;/b&gt;" in as_object
    assert "<code>host</code>: db1 → &lt;db2&gt;" in as_object
    as_dict = _pending({"reason": "waiting", "changes": ["max_pool_size", "password"]})
    assert "<code>max_pool_size</code>" in as_dict
    assert "<code>password</code>" in as_dict
    assert "waiting" in _pending("waiting for leases")
    assert _pending(None) == ""


def test_changes_show_references_not_values() -> None:
    text = _changes([{"field": "connection_string", "old": "postgresql://a:${env:A}@h/db", "new": "x"}])
    assert "${env:A}" in text
    assert _changes({}) == ""


def test_event_with_changed_fields_and_errors() -> None:
    @dataclass(frozen=True)
    class Changed(ReloadEvent):
        changes: tuple[str, ...] = ("description",)

    html = _event(Changed("updated", "orders", 3, "/m/<x>.yaml", ("a.yaml:2:1: <bad>",)))
    assert 'data-kind="updated"' in html
    assert "generation 3" in html
    assert "<code>description</code>" in html
    assert "/m/&lt;x&gt;.yaml" in html
    assert "a.yaml:2:1: &lt;bad&gt;" in html


def test_sparkline_has_a_text_equivalent() -> None:
    svg = sparkline([0, 2, 4, 1], "in use", "connections")
    assert svg.startswith("<svg")
    assert 'role="img"' in svg
    assert "low 0, high 4, now 1" in svg
    assert sparkline([3], "in use", "connections") == ""  # one point is no line


async def test_view_filters_and_samples(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "tags: [sales]"))
    (manifests / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        history = StatusHistory(registry, window=3)
        for at in range(5):
            history.sample(now=float(at))
        view = StatusView(registry, history, "/ops")
        page = view.page(Filters(tag="sales"))
        history.close()
    assert 'data-name="a" data-type="csv"' in page
    assert 'data-name="b" data-type="csv" data-state="ready" data-tags="[]" hidden' in page
    assert 'href="/ops/resources/a"' in page
    assert 'src="/ops/status/static/status.js"' in page
    assert "showing 1 of 2" in page
