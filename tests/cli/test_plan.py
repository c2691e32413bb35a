"""``xresource plan``: field diffs in every format, exit codes, and nothing unsafe in any output.

The flow is the GitOps one: a real git repository, a branch that edits the
manifests, and ``plan`` of the branch against the base branch's checkout (a git
worktree) or against a running ``serve``. Markdown output is parsed by a
CommonMark parser with GitHub's tables, so "cannot break the markdown or
inject HTML" is checked on the rendered HTML.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.registry.support import fast_settings
from tests.support.http_servers import start_app
from tests.support.waiting import eventually
from xresource.cli.main import main
from xresource.cli.plan_render import MARKDOWN_BUDGET, render_markdown, render_text
from xresource.cli.plan_view import build_view
from xresource.registry import Registry
from xresource.registry.diff import Desired, Version, diff
from xresource.server.app import create_app

ENV_SECRET = "env-value-Zq81-never-printed"
FILE_SECRET = "file-value-Hw27-never-printed"

BASE_FILES = {
    "data/orders.csv": "id,total\n1,9.50\n",
    "data/products.json": "[]\n",
    "resources.d/orders.yaml": "name: orders\ntype: csv\nfile_path: ../data/orders.csv\n",
    "resources.d/users.yaml": (
        "name: users\ntype: postgresql\nconnect: lazy\n"
        "connection_string: postgresql://app:${env:USERS_DB_PASSWORD}@db:5432/app\nmax_pool_size: 5\n"
    ),
    "resources.d/billing.yaml": (
        "name: billing\ntype: rest_api\nconnect: lazy\nendpoint: https://billing.example.com/v1\n"
        "headers:\n  X-Team: payments\nauth_params:\n  bearer_token: ${file:/run/secrets/billing_token}\n"
    ),
    "resources.d/legacy.yaml": "name: legacy\ntype: csv\nfile_path: ../data/orders.csv\n",
}
# The pull request: a pool size and a password reference change (replace), tags and a
# description (update in place), a new file resource (add), a deleted manifest (remove),
# and a rotated token path plus a changed header on the REST resource (replace).
BRANCH_EDITS = {
    "resources.d/orders.yaml": "name: orders\ntype: csv\ntags: [sales, eu]\ndescription: EU orders\n"
    "file_path: ../data/orders.csv\n",
    "resources.d/users.yaml": (
        "name: users\ntype: postgresql\nconnect: lazy\n"
        "connection_string: postgresql://app:${env:USERS_DB_PASSWORD_V2}@db:5432/app\nmax_pool_size: 10\n"
    ),
    "resources.d/billing.yaml": (
        "name: billing\ntype: rest_api\nconnect: lazy\nendpoint: https://billing.example.com/v1\n"
        "headers:\n  X-Team: billing\nauth_params:\n  bearer_token: ${file:/run/secrets/billing_token_v2}\n"
    ),
    "resources.d/products.yaml": "name: products\ntype: json\nfile_path: ../data/products.json\n",
}

EXPECTED_TEXT = """\
+   add              products (json)  {head}/products.yaml
      + file_path: "../data/products.json"
-/+ replace          billing (rest_api)  {head}/billing.yaml
      ~ auth_params.bearer_token: "${{file:/run/secrets/billing_token}}" -> "${{file:/run/secrets/billing_token_v2}}"  # forces replace
      ~ headers.X-Team: "payments" -> "billing"  # forces replace
-/+ replace          users (postgresql)  {head}/users.yaml
      ~ connection_string: "postgresql://app:${{env:USERS_DB_PASSWORD}}@db:5432/app" -> "postgresql://app:${{env:USERS_DB_PASSWORD_V2}}@db:5432/app"  # forces replace
      ~ max_pool_size: 5 -> 10  # forces replace
~   update in place  orders (csv)  {head}/orders.yaml
      + description: "EU orders"
      + tags: ["sales", "eu"]
-   remove           legacy (csv)  {base}/legacy.yaml
      - file_path: "../data/orders.csv"
plan: 1 to add, 2 to replace, 1 to update in place, 1 to remove, 0 unchanged, 0 problem(s)"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    proc = subprocess.run(
        ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@dataclass
class Checkouts:
    repo: Path
    """The pull request's checkout (branch ``change``)."""
    base: Path
    """The base branch's checkout (a worktree of ``main``)."""

    @property
    def head_folder(self) -> Path:
        return self.repo / "resources.d"

    @property
    def base_folder(self) -> Path:
        return self.base / "resources.d"

    def commit(self, files: dict[str, str | None], message: str) -> None:
        for relative, text in files.items():
            target = self.repo / relative
            if text is None:
                git(self.repo, "rm", "-q", relative)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            git(self.repo, "add", relative)
        git(self.repo, "commit", "-q", "-m", message)


@pytest.fixture
def checkouts(tmp_path: Path) -> Checkouts:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for relative, text in BASE_FILES.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base manifests")
    git(repo, "checkout", "-q", "-b", "change")
    base = tmp_path / "base"
    git(repo, "worktree", "add", "-q", str(base), "main")
    return Checkouts(repo, base)


@pytest.fixture
def branch(checkouts: Checkouts) -> Checkouts:
    """The pull request's commit: the edits above, and the legacy manifest deleted."""
    checkouts.commit({**BRANCH_EDITS, "resources.d/legacy.yaml": None}, "change the manifests")
    return checkouts


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, with real secret values in its environment."""
    env = {**os.environ, "USERS_DB_PASSWORD": ENV_SECRET, "USERS_DB_PASSWORD_V2": ENV_SECRET + "2"}
    return subprocess.run(
        [sys.executable, "-m", "xresource.cli.main", "plan", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- the git flow -------------------------------------------------------------------------------


def test_a_branch_against_the_base_checkout_shows_each_changed_field(
    branch: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    assert git(branch.base, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    code, out = plan(capsys, str(branch.head_folder), "--against", str(branch.base_folder))
    assert code == 0
    assert out.strip() == EXPECTED_TEXT.format(head=branch.head_folder, base=branch.base_folder)


def test_json_carries_every_field_change_and_the_counts(
    branch: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = plan(
        capsys, str(branch.head_folder), "--against", str(branch.base_folder), "--format", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["changes_present"] is True
    assert data["summary"] == {
        "add": 1,
        "replace": 2,
        "update": 1,
        "remove": 1,
        "unchanged": 0,
        "problems": 0,
    }
    [users] = [r for r in data["replaced"] if r["name"] == "users"]
    assert users["fields"] == [
        {
            "field": "connection_string",
            "old": "postgresql://app:${env:USERS_DB_PASSWORD}@db:5432/app",
            "new": "postgresql://app:${env:USERS_DB_PASSWORD_V2}@db:5432/app",
            "live": False,
            "sign": "~",
        },
        {"field": "max_pool_size", "old": 5, "new": 10, "live": False, "sign": "~"},
    ]
    assert users["path"] == str(branch.head_folder / "users.yaml")
    assert users["line"] == 1
    [orders] = data["updated"]
    assert [(f["field"], f["new"], f["live"]) for f in orders["fields"]] == [
        ("description", "EU orders", True),
        ("tags", ["sales", "eu"], True),
    ]
    [legacy] = data["removed"]
    assert legacy["path"] == str(branch.base_folder / "legacy.yaml")
    assert legacy["fields"] == [
        {"field": "file_path", "old": "../data/orders.csv", "new": None, "live": False, "sign": "-"}
    ]
    assert [r["name"] for r in data["added"]] == ["products"]
    assert data["rejected"] == []
    assert data["problems"] == []


def test_a_branch_that_only_renames_a_tag_is_an_update_in_place(
    checkouts: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    checkouts.commit(
        {
            "resources.d/orders.yaml": "name: orders\ntype: csv\ntags: [sales]\nfile_path: ../data/orders.csv\n"
        },
        "tag orders",
    )
    code, out = plan(capsys, str(checkouts.head_folder), "--against", str(checkouts.base_folder))
    assert code == 0
    assert out.splitlines() == [
        f"~   update in place  orders (csv)  {checkouts.head_folder / 'orders.yaml'}",
        '      + tags: ["sales"]',
        "plan: 0 to add, 0 to replace, 1 to update in place, 0 to remove, 3 unchanged, 0 problem(s)",
    ]


def test_a_broken_file_on_the_branch_is_rejected_with_its_line_and_keeps_running(
    checkouts: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    checkouts.commit(
        {
            "resources.d/users.yaml": "name: users\ntype: postgresql\nconnect: lazy\n"
            "connection_string: postgresql://app@db:5432/app\nmax_pool_size: 0\n",
            "resources.d/products.yaml": "name: products\ntype: json\nfile_path: ../data/products.json\n",
        },
        "break users",
    )
    args = [str(checkouts.head_folder), "--against", str(checkouts.base_folder)]
    code, out = plan(capsys, *args)
    assert code == 1
    users_file = checkouts.head_folder / "users.yaml"
    assert out.splitlines() == [
        f"+   add              products (json)  {checkouts.head_folder / 'products.yaml'}",
        '      + file_path: "../data/products.json"',
        "!   rejected         users (postgresql)  keeps running as deployed until its file is fixed",
        f"      {users_file}:5:16: users: max_pool_size: Input should be greater than or equal to 1",
        "plan: 1 to add, 0 to replace, 0 to remove, 4 unchanged, 1 problem(s)",
    ]
    # A rejected file is exit 1 whatever --detailed-exitcode says: it must fail the check.
    assert plan(capsys, *args, "--detailed-exitcode")[0] == 1
    code, out = plan(capsys, *args, "--format", "github")
    assert code == 1
    assert out.splitlines()[0] == (
        f"::error file={users_file},line=5,col=16,title=xresource plan%3A rejected users.max_pool_size"
        "::Input should be greater than or equal to 1"
    )
    data = json.loads(plan(capsys, *args, "--format", "json")[1])
    [users] = data["rejected"]
    assert users["name"] == "users"
    assert users["errors"] == [
        f"{users_file}:5:16: users: max_pool_size: Input should be greater than or equal to 1"
    ]
    assert data["problems"][0]["line"] == 5


# ---- exit codes -----------------------------------------------------------------------------------


def test_exit_codes(branch: Checkouts, tmp_path: Path) -> None:
    head, base = str(branch.head_folder), str(branch.base_folder)
    assert run_cli(head, "--against", base, cwd=tmp_path).returncode == 0  # changes: still success
    assert run_cli(head, "--against", base, "--detailed-exitcode", cwd=tmp_path).returncode == 3
    assert run_cli(base, "--against", base, "--detailed-exitcode", cwd=tmp_path).returncode == 0
    missing = run_cli(head, "--against", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope: no such file or directory" in missing.stderr
    assert run_cli(str(tmp_path / "nope"), "--against", base, cwd=tmp_path).returncode == 2
    assert run_cli(head, "--against", base, "--format", "html", cwd=tmp_path).returncode == 2
    assert run_cli(head, cwd=tmp_path).returncode == 2  # --against is required


def test_no_changes(branch: Checkouts, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(branch.head_folder)
    code, out = plan(capsys, folder, "--against", folder, "--format", "markdown")
    assert code == 0
    assert "No resource changes." in out
    assert "0 to add, 0 to replace, 0 to remove, 4 unchanged, 0 problem(s)" in out


def test_against_a_server_that_is_not_xresource(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aiohttp import web

    async def scenario() -> tuple[int, str]:
        app = web.Application()

        async def not_ours(_: web.Request) -> web.Response:
            return web.json_response({"hello": "world"})

        app.router.add_get("/resources", not_ours)
        server = await start_app(app)
        try:
            return await asyncio.to_thread(plan, capsys, str(tmp_path), "--against", server.url)
        finally:
            await server.stop()

    code, out = asyncio.run(scenario())
    assert code == 1
    assert "does not answer as `xresource serve` does" in out
    assert "Traceback" not in out


# ---- against a running serve ---------------------------------------------------------------------


async def test_against_a_running_serve_shows_field_diffs(
    branch: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Registry(branch.base_folder, settings=fast_settings()) as registry:
        server = await start_app(create_app(registry))
        try:
            await eventually(lambda: "orders" in registry, what="orders loaded")
            code, out = await asyncio.to_thread(
                plan, capsys, str(branch.head_folder), "--against", server.url, "--format", "json"
            )
        finally:
            await server.stop()
    assert code == 0
    data = json.loads(out)
    [users] = [r for r in data["replaced"] if r["name"] == "users"]
    assert [(f["field"], f["old"], f["new"]) for f in users["fields"]] == [
        (
            "connection_string",
            "postgresql://app:${env:USERS_DB_PASSWORD}@db:5432/app",
            "postgresql://app:${env:USERS_DB_PASSWORD_V2}@db:5432/app",
        ),
        ("max_pool_size", 5, 10),
    ]
    [orders] = data["updated"]
    assert [f["field"] for f in orders["fields"]] == ["description", "tags"]
    [legacy] = data["removed"]
    assert legacy["fields"] == [
        {"field": "file_path", "old": "../data/orders.csv", "new": None, "live": False, "sign": "-"}
    ]


# ---- formats ---------------------------------------------------------------------------------------


def render_html(markdown: str) -> str:
    """As GitHub would: CommonMark with tables, raw HTML allowed (so an injection would show)."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def test_markdown_is_a_table_and_a_section_per_resource(
    branch: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = plan(
        capsys, str(branch.head_folder), "--against", str(branch.base_folder), "--format", "markdown"
    )
    assert code == 0
    html = render_html(out)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 1 + 5  # the header and one row per changed resource
    assert all(len(re.findall(r"<t[dh]>", row)) == 5 for row in rows)
    assert re.findall(r"<h4>(.*?)</h4>", html) == [
        "<code>+</code> add <code>products</code> (<code>json</code>)",
        "<code>-/+</code> replace <code>billing</code> (<code>rest_api</code>)",
        "<code>-/+</code> replace <code>users</code> (<code>postgresql</code>)",
        "<code>~</code> update in place <code>orders</code> (<code>csv</code>)",
        "<code>-</code> remove <code>legacy</code> (<code>csv</code>)",
    ]
    assert "- max_pool_size: 5\n+ max_pool_size: 10  # forces replace\n" in out


def test_github_annotations_and_summary(branch: Checkouts, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = plan(
        capsys, str(branch.head_folder), "--against", str(branch.base_folder), "--format", "github"
    )
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[-1]
        == "plan: 1 to add, 2 to replace, 1 to update in place, 1 to remove, 0 unchanged, 0 problem(s)"
    )
    assert all(line.startswith("::notice ") for line in lines[:-1])
    assert (
        f"::notice file={branch.head_folder / 'users.yaml'},line=1,title=xresource plan%3A -/+ replace users "
        '(postgresql)::~ connection_string: "postgresql://app:${env:USERS_DB_PASSWORD}@db:5432/app" -> '
        '"postgresql://app:${env:USERS_DB_PASSWORD_V2}@db:5432/app"  # forces replace%0A~ max_pool_size: 5 -> 10'
        "  # forces replace"
    ) in lines
    # A removed resource has no file in the pull request: its notice names no file.
    assert (
        '::notice title=xresource plan%3A - remove legacy (csv)::- file_path: "../data/orders.csv"' in lines
    )


# ---- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "github", "markdown"])
def test_no_resolved_secret_in_any_format(branch: Checkouts, tmp_path: Path, fmt: str) -> None:
    """Real values sit in the environment and in the referenced file; no output may carry them."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(FILE_SECRET)
    (secrets / "token_v2").write_text(FILE_SECRET + "2")
    branch.commit(
        {
            "resources.d/vault.yaml": "name: vault\ntype: rest_api\nconnect: lazy\n"
            f"endpoint: https://vault.example.com\nauth_params:\n  bearer_token: ${{file:{secrets / 'token_v2'}}}\n"
            # A literal credential that slipped past the checks, in a field nothing checks.
            "description: copy of postgresql://app:hunter2-literal@db:5432/app\n",
        },
        "add vault",
    )
    branch.base.joinpath("resources.d/vault.yaml").write_text(
        "name: vault\ntype: rest_api\nconnect: lazy\nendpoint: https://vault.example.com\n"
        f"auth_params:\n  bearer_token: ${{file:{secrets / 'token'}}}\n"
    )
    proc = run_cli(
        str(branch.head_folder), "--against", str(branch.base_folder), "--format", fmt, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for secret in (ENV_SECRET, FILE_SECRET, "hunter2-literal"):
        assert secret not in output
    assert "${env:USERS_DB_PASSWORD_V2}" in output  # the reference is what a reviewer sees
    assert f"${{file:{secrets / 'token_v2'}}}" in output
    assert "postgresql://app:***@db:5432/app" in output


def test_a_rotated_secret_file_names_the_reference_not_the_content() -> None:
    """The live registry's diff carries rotations (plan itself reads no secret): every format says so."""
    ref = "${file:/run/secrets/api_token}"

    def version(digests: dict[str, str]) -> Version:
        fields = {"name": "api", "type": "rest_api", "auth_params": {"bearer_token": ref}}
        return Version("api", "rest_api", "/m/api.yaml", "same", fields, "/m", digests)

    result = diff({"api": version({ref: "digest-1"})}, Desired({"api": version({ref: "digest-2"})}))
    view = build_view(result, new_fields={}, old_fields={}, old_paths={}, lines={"api": 3})
    assert render_text(view).splitlines()[:2] == [
        "-/+ replace          api (rest_api)  /m/api.yaml",
        f"      # secret file content changed: {ref}  # forces replace",
    ]
    assert f"! secret file content changed: {ref}  # forces replace" in render_markdown(view)


# ---- hostile input --------------------------------------------------------------------------------

HOSTILE_VALUE = (
    "x\n::error file=a.yaml::pwned\r\n<script>alert(1)</script><img src=x onerror=alert(2)> | `tick` "
    "```\n# heading\n@admin [link](https://evil.example) \u202ereversed"
)


@pytest.fixture
def hostile(checkouts: Checkouts) -> Checkouts:
    """A pull request written to break the outputs: values, header keys and file names."""
    value = json.dumps(HOSTILE_VALUE)
    key = json.dumps("X-A|`b`\n::warning::k<i>")
    checkouts.commit(
        {
            "resources.d/billing.yaml": "name: billing\ntype: rest_api\nconnect: lazy\n"
            f"endpoint: https://billing.example.com/v1\ndescription: {value}\n"
            f"headers:\n  X-Team: payments\n  {key}: {value}\n"
            "auth_params:\n  bearer_token: ${file:/run/secrets/billing_token}\n",
            # A file name and an invalid resource name with a line break, backticks, a pipe and HTML.
            "resources.d/ev`il|<b>x\n::error::y.yaml": 'name: "Bad\\n::error::name <i>"\ntype: csv\n',
            "resources.d/new`<b>|.yaml": "name: fine_new\ntype: json\nfile_path: ../data/products.json\n"
            f"description: {value}\n",
        },
        "hostile change",
    )
    return checkouts


def test_hostile_text_and_github_output_keep_one_line_per_item(
    hostile: Checkouts, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(hostile.head_folder), "--against", str(hostile.base_folder)]
    code, text = plan(capsys, *args)
    assert code == 1
    assert not any(line.startswith("::") for line in text.splitlines())
    assert "\u202e" not in text
    assert "\r" not in text
    code, github = plan(capsys, *args, "--format", "github")
    lines = github.splitlines()
    # One annotation per problem and per change, then the summary: nothing a value could add.
    kinds = ["::error", "::error", "::notice", "::notice", "plan:"]
    assert [line.split(" ", 1)[0] for line in lines] == kinds
    # The file name's line break and colons are escaped inside the property, so the annotation
    # lands on that file and its message cannot end early.
    assert lines[0].startswith(
        f"::error file={hostile.head_folder}/ev`il|<b>x%0A%3A%3Aerror%3A%3Ay.yaml,line=1,col=7,"
    )


def test_hostile_markdown_cannot_break_out(hostile: Checkouts, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = plan(
        capsys, str(hostile.head_folder), "--against", str(hostile.base_folder), "--format", "markdown"
    )
    assert code == 1
    html = render_html(out)
    for tag in ("<script", "<img", "<i>", "<b>", "<a ", "<h1", "<h2", "<h5"):
        assert tag not in html, tag
    assert html.count("<h3>") == 1  # our title; no value made a heading
    # The table: a header, the added and the replaced resource; five cells each.
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 3
    assert all(len(re.findall(r"<t[dh]>", row)) == 5 for row in rows)
    # Every hostile text is inside code (no mention, link or heading is made of it).
    outside_code = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", html, flags=re.S)
    for fragment in ("@admin", "evil.example", "pwned", "::error", "heading"):
        assert fragment not in outside_code, fragment
    assert re.findall(r"<h4>(.*?)</h4>", html) == [
        "<code>+</code> add <code>fine_new</code> (<code>json</code>)",
        "<code>-/+</code> replace <code>billing</code> (<code>rest_api</code>)",
        "Problems",
    ]


def test_markdown_stays_under_the_comment_limit() -> None:
    def versions(suffix: str) -> dict[str, Version]:
        fields = {f"k{j:02d}": "x" * 150 + suffix for j in range(20)}
        return {f"r{i}": Version(f"r{i}", "csv", f"/m/r{i}.yaml", suffix, fields) for i in range(60)}

    view = build_view(
        diff(versions("old"), Desired(versions("new"))), new_fields={}, old_fields={}, old_paths={}, lines={}
    )
    out = render_markdown(view)
    assert len(out) <= MARKDOWN_BUDGET
    assert out.count("| `-/+` | replace |") == 60  # the table is whole
    assert "resource(s) left out (the comment is too long)" in out
