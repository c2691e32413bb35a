"""Rendering of what the registry reports (pending versions and their field diffs, reload events
with changed fields, a failed reload) and of hostile text, without a browser."""

from __future__ import annotations

from pathlib import Path

from tests.registry.support import csv_manifest, fast_settings
from xresource.registry import Registry, ReloadEvent
from xresource.registry.diff import FieldChange
from xresource.server.status.history import StatusHistory
from xresource.server.status.render import Filters, StatusView, _event, _pending, sparkline


async def test_a_pending_version_shows_why_and_its_field_diff_escaped(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        # The new version cannot connect (its file is missing): the old one keeps serving.
        (manifests / "a.yaml").write_text(
            csv_manifest("a", data / "missing.csv", 'description: "<b>bold</b>"')
        )
        result = await registry.reload()
        assert result.rejected == ["a"]
        status = registry.status()["a"]
        assert status.pending is not None
        row = StatusView(registry, StatusHistory(registry), "").fragments(Filters())["rows"]
    assert '<div class="pending"><b>pending</b>: ' in row
    assert "missing.csv" in row
    # Values as JSON, as the registry writes them (a secret would show as its reference).
    assert f"<code>file_path</code>: &quot;{data / 'a.csv'}&quot; -&gt; &quot;{data / 'missing.csv'}&quot;" in row
    assert "<code>description</code>: null -&gt; &quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in row
    assert "<b>bold</b>" not in row
    assert f'<td class="path">{manifests / "a.yaml"}:1</td>' in row  # the running version's file and line


def test_pending_without_changes_and_no_pending() -> None:
    assert _pending(None, ()) == ""
    text = _pending("reload failed: RuntimeError: <x>", ())
    assert text == '<div class="pending"><b>pending</b>: reload failed: RuntimeError: &lt;x&gt;</div>'


def test_event_lists_changed_fields_as_written_and_rotated_secrets() -> None:
    event = ReloadEvent(
        "rejected",
        "orders",
        3,
        "/m/<x>.yaml",
        ("a.yaml:2:1: <bad>",),
        changes=(
            FieldChange(
                "connection_string", "postgresql://a:${env:A}@h/db", "postgresql://a:${env:B}@h/db", False
            ),
            FieldChange("description", None, "<i>new</i>", True),
        ),
        secrets_rotated=("${file:/run/secrets/token}",),
    )
    html = _event(event)
    assert 'data-kind="rejected"' in html
    assert "generation 3" in html
    assert (
        "<code>connection_string</code>: &quot;postgresql://a:${env:A}@h/db&quot; -&gt; &quot;postgresql://a:${env:B}@h/db&quot;"
        in html
    )
    assert "<code>description</code>: null -&gt; &quot;&lt;i&gt;new&lt;/i&gt;&quot;" in html
    assert "<li>secret ${file:/run/secrets/token} rotated</li>" in html
    assert "/m/&lt;x&gt;.yaml" in html
    assert "a.yaml:2:1: &lt;bad&gt;" in html


async def test_a_reload_that_failed_as_a_whole_is_in_the_summary(manifests: Path, data: Path) -> None:
    (manifests / "a.yaml").write_text(csv_manifest("a", data / "a.csv"))
    async with Registry(manifests, settings=fast_settings()) as registry:
        view = StatusView(registry, StatusHistory(registry), "")
        assert "last reload failed" not in view.fragments(Filters())["summary"]
        registry.last_reload_error = "reload failed: OSError: <disk>"  # what a failed reload records
        summary = StatusView(registry, StatusHistory(registry), "").fragments(Filters())["summary"]
    assert "<b>last reload failed</b>: reload failed: OSError: &lt;disk&gt;" in summary


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
