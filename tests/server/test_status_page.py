"""The operator's status page in a real headless Chromium (Debian's package, driven by Playwright),
served by a real ``xresource serve`` on the shipped sample resources."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.support import Serve
from tests.support.services import REQUIRE_SERVICES, require_service
from tests.support.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCREENSHOT = ROOT / "docs" / "img" / "status-page.png"
SCREENSHOT_TEXT = ROOT / "docs" / "img" / "status-page.txt"
UPDATE_ENV = "XRESOURCE_UPDATE_SCREENSHOTS"
WAIT_MS = 15_000

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (scripts/setup test installs Debian's chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _copy_samples(folder: Path) -> Path:
    """A copy of the shipped resources.d/ and its sample data, laid out as in the repository."""
    shutil.copytree(ROOT / "resources.d", folder / "resources.d")
    shutil.copytree(ROOT / "examples" / "data", folder / "examples" / "data")
    return folder / "resources.d"


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    return _copy_samples(tmp_path)


class SyncServe(Serve):
    """``xresource serve`` started from the folder above the manifests (paths show as in the docs)."""

    def __init__(self, tmp_path: Path, folder: Path, env: dict[str, str] | None = None) -> None:
        cwd = Path.cwd()
        os.chdir(folder.parent)
        try:
            super().__init__(tmp_path, Path(folder.name), env=env)
        finally:
            os.chdir(cwd)
        eventually_sync(self._ready, timeout=20, what="serve ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.communicate()
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def fetch(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return str(response.read().decode())

    def first_event(self) -> str:
        """The stream's first ``update`` (the whole live state)."""
        with urllib.request.urlopen(f"{self.url}/status/events", timeout=5) as response:
            text = ""
            while "event: update" not in text or not text.endswith("\n\n"):
                text += response.readline().decode()
            return text


@pytest.fixture
def serve(tmp_path: Path, samples: Path) -> Iterator[SyncServe]:
    running = SyncServe(tmp_path, samples)
    yield running
    code, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncServe, Path]]:
    """One serve for the edit tests (a start costs seconds): each edits files of its own and
    looks only at its own rows, so their order does not matter."""
    folder = tmp_path_factory.mktemp("shared")
    samples = _copy_samples(folder)
    running = SyncServe(folder, samples)
    yield running, samples
    code, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err


def _open(browser: Any, url: str, **context: Any) -> Any:
    # The page's Content-Security-Policy forbids string evaluation, which Playwright's waits use.
    # Bypassing it also makes the markup test stricter: only escaping stands between a crafted
    # name and a running script, not the policy (whose header is checked separately).
    page = browser.new_page(bypass_csp=True, **context)
    page.goto(url)
    page.wait_for_function("document.getElementById('live').textContent.includes('live')", timeout=WAIT_MS)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads itself
    return page


def _row(page: Any, name: str) -> Any:
    return page.locator(f'#rows tr[data-name="{name}"]')


def test_page_lists_the_samples_filters_and_reads_at_200_percent(browser: Any, serve: SyncServe) -> None:
    page = _open(browser, f"{serve.url}/", viewport={"width": 1400, "height": 900})
    names = page.locator("#rows tr[data-name]").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names == ["customers", "orders", "products", "regions"]
    customers = _row(page, "customers")
    assert customers.locator(".state").inner_text().endswith("ready")  # colour and text
    assert customers.locator("td.path").inner_text().startswith("resources.d/customers.yaml")
    assert customers.locator("a").get_attribute("href") == "/resources/customers"
    with urllib.request.urlopen(f"{serve.url}/", timeout=5) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    row_json = json.loads(serve.fetch("/resources/customers"))
    assert (row_json["name"], row_json["type"]) == ("customers", "csv")
    _check_screenshot(page)

    # Filters, by keyboard: the skip link first, then the controls.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.locator("#filter-type").focus()
    page.keyboard.press("ArrowDown")  # "csv"
    page.wait_for_function("document.getElementById('shown').textContent === 'showing 1 of 4'")
    assert page.locator("#rows tr[data-name]:not([hidden])").count() == 1
    assert "type=csv" in page.url
    page.locator("#filter-type").select_option("")
    page.locator("#filter-tag").select_option("sales")
    visible = page.locator("#rows tr[data-name]:not([hidden])").evaluate_all(
        "r => r.map(x => x.dataset.name)"
    )
    assert visible == ["orders", "regions"]

    # 200 % zoom: the same page in half the CSS pixels; nothing needs horizontal scrolling.
    zoomed = _open(browser, f"{serve.url}/", viewport={"width": 700, "height": 900}, device_scale_factor=2)
    assert zoomed.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert zoomed.locator("#rows tr[data-name]").count() == 4


def test_an_edit_shows_a_reload_and_a_new_generation_without_reloading(
    browser: Any, shared: tuple[SyncServe, Path]
) -> None:
    serve, samples = shared
    page = _open(browser, f"{serve.url}/")
    assert _row(page, "products").locator("td.num").inner_text() == "1"
    manifest = samples / "products.toml"
    manifest.write_text(re.sub(r'description = "', 'description = "Edited. ', manifest.read_text(), count=1))
    page.wait_for_function(
        "document.querySelector('#rows tr[data-name=\"products\"] td.num').textContent === '2'",
        timeout=WAIT_MS,
    )
    entry = page.locator('#timeline li.event:has(b:text-is("products"))').first
    assert entry.get_attribute("data-kind") in ("replaced", "updated")
    assert "generation 2" in entry.inner_text()
    assert "Edited." in _row(page, "products").inner_text()
    assert page.evaluate("window.__sameDocument") is True


def test_a_broken_edit_shows_the_error_with_file_and_line(
    browser: Any, shared: tuple[SyncServe, Path]
) -> None:
    serve, samples = shared
    page = _open(browser, f"{serve.url}/")
    (samples / "regions.yaml").write_text("name: regions\ntype: yaml\nfile_path: [\n")
    error = _row(page, "regions").locator("pre.error")
    error.wait_for(timeout=WAIT_MS)
    assert re.search(r"regions\.yaml:\d+:\d+", error.inner_text()), error.inner_text()
    assert _row(page, "regions").locator(".state").inner_text().endswith("ready")  # the last good one runs
    rejected = page.locator('#timeline li.event[data-kind="rejected"]:has-text("regions.yaml")').first
    rejected.wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True


def test_markup_in_names_errors_and_fields_is_shown_as_text(
    browser: Any, shared: tuple[SyncServe, Path]
) -> None:
    serve, samples = shared
    page = _open(browser, f"{serve.url}/")
    evil = "<img src=x onerror=window.pwned=1>"
    (samples / f"{evil}.yaml").write_text('name: x\ntype: "<script>window.pwned=2</script>"\n')
    (samples / "marked.yaml").write_text(
        "name: marked\ntype: csv\nfile_path: ../examples/data/customers.csv\n"
        'description: "<script>window.pwned=3</script>"\ntags: ["<b>bold</b>"]\n'
    )
    _row(page, "marked").wait_for(timeout=WAIT_MS)
    page.locator('#timeline li.event[data-kind="rejected"]:has-text("pwned=2")').first.wait_for(
        timeout=WAIT_MS
    )
    text = page.locator("body").inner_text()
    assert "<script>window.pwned=3</script>" in text
    assert "<b>bold</b>" in text
    assert evil in text  # the file name, as text
    assert "<script>window.pwned=2</script>" in text
    assert page.evaluate("window.pwned") is None
    assert page.locator("#rows img, #timeline img, #rows script, #timeline script, #rows b.tag").count() == 0
    # A reload of the page renders the same on the server side.
    page.reload()
    assert page.evaluate("window.pwned") is None
    assert "<script>window.pwned=3</script>" in page.locator("body").inner_text()


SECRETS = {
    "XR_STATUS_PG_PASSWORD": "pg-Status-8812-never-print",
    "XR_STATUS_TOKEN": "tok-Status-2207-never-print",
}


def test_page_scripts_and_event_stream_never_carry_a_secret(
    browser: Any, tmp_path: Path, samples: Path
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    secret_file = tmp_path / "api_key"
    secret_file.write_text("key-Status-5531-never-print\n")
    (samples / "pg.yaml").write_text(
        "name: pg\ntype: postgresql\nmin_pool_size: 1\nmax_pool_size: 2\n"
        "connection_string: postgresql://postgres:${env:XR_STATUS_PG_PASSWORD}@127.0.0.1:5432/test\n"
    )
    (samples / "api.yaml").write_text(  # nothing listens there: its error is on the page
        "name: api\ntype: rest_api\nendpoint: http://127.0.0.1:9/v1?tag=${env:XR_STATUS_TOKEN}\nconnect: lazy\n"
        f"auth_params:\n  api_key: ${{file:{secret_file}}}\n  api_key_header: X-Api-Key\n"
    )
    running = SyncServe(tmp_path, samples, env=SECRETS)
    try:
        page = _open(browser, f"{running.url}/")
        outputs = {
            "page (browser)": page.content(),
            "page (server)": running.fetch("/"),
            "script": running.fetch("/status/static/status.js"),
            "style": running.fetch("/status/static/status.css"),
            "fragments": running.fetch("/status/fragments"),
            "event stream": running.first_event(),
            "resources": running.fetch("/resources"),
        }
    finally:
        code, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    assert 'data-name="pg"' in outputs["page (server)"]
    assert "in use: <b>" in outputs["page (server)"]  # the pool's figures are on the page
    assert "xresource_pool" not in outputs["page (server)"]
    secrets = [*SECRETS.values(), "key-Status-5531-never-print"]
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in the {where}"


def test_a_pending_change_shows_why_and_its_diff_with_secrets_as_references(
    browser: Any, tmp_path: Path, samples: Path
) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    manifest = samples / "pg.yaml"
    manifest.write_text(
        "name: pg\ntype: postgresql\nmin_pool_size: 1\nmax_pool_size: 2\n"
        "connection_string: postgresql://postgres:${env:XR_STATUS_PG_PASSWORD}@127.0.0.1:5432/test\n"
    )
    running = SyncServe(tmp_path, samples, env=SECRETS)
    try:
        page = _open(browser, f"{running.url}/")
        row = _row(page, "pg")
        assert row.locator(".state").inner_text().endswith("ready")
        # The new version names a variable that is not set: it cannot connect, the old one serves.
        manifest.write_text(
            manifest.read_text()
            .replace("XR_STATUS_PG_PASSWORD", "XR_STATUS_PG_ROTATED")
            .replace("max_pool_size: 2", "max_pool_size: 3")
        )
        pending = row.locator(".pending")
        pending.wait_for(timeout=WAIT_MS)
        text = pending.inner_text()
        assert text.startswith("pending: ")
        assert "XR_STATUS_PG_ROTATED" in text  # why: the variable is not set
        diff = pending.locator("ul.changes li").all_inner_texts()
        assert (
            'connection_string: "postgresql://postgres:${env:XR_STATUS_PG_PASSWORD}@127.0.0.1:5432/test"'
            ' -> "postgresql://postgres:${env:XR_STATUS_PG_ROTATED}@127.0.0.1:5432/test"'
        ) in diff
        assert "max_pool_size: 2 -> 3" in diff
        assert row.locator(".state").inner_text().endswith("ready")  # the running version
        assert row.locator("td.num").inner_text() == "1"
        rejected = page.locator('#timeline li.event[data-kind="rejected"]:has(b:text-is("pg"))').first
        rejected.wait_for(timeout=WAIT_MS)
        changed = rejected.locator("ul.changes code").all_inner_texts()
        assert changed == ["connection_string", "max_pool_size"]
        assert page.evaluate("window.__sameDocument") is True
        content = page.content()
    finally:
        code, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    for secret in SECRETS.values():
        assert secret not in content


# ---- the docs' screenshot --------------------------------------------------------------------


def _check_screenshot(page: Any) -> None:
    """docs/img/status-page.png shows this page: its visible text (times masked) is kept beside it,
    and a change to what the page shows fails here until the picture is taken again."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<time>", page.locator("body").inner_text())
    text = re.sub(
        r"(\.ya?ml|\.toml):\d+", r"\1", text
    )  # manifest lines appear once the registry reports them
    text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip()) + "\n"
    if os.environ.get(UPDATE_ENV) or not SCREENSHOT.exists() or not SCREENSHOT_TEXT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        SCREENSHOT_TEXT.write_text(text)
        return
    assert SCREENSHOT_TEXT.read_text() == text, (
        f"{SCREENSHOT.relative_to(ROOT)} is stale: the page shows something else now; "
        f"run `{UPDATE_ENV}=1 scripts/test tests/server/test_status_page.py` and commit the picture"
    )
