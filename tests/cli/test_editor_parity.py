"""The editor says what CI says: the real YAML language server against ``xresource validate``.

The server runs as VS Code runs it (``scripts/yamlls`` installs the pinned
version under ``.cache/``), reads the modeline ``xresource init`` writes, and
validates with the generated schema. For every problem ``validate`` reports,
the editor must flag the same line with the same message (up to the example,
which the CLI can tailor to the resource), and hover text must render as
Markdown, not as escaped text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.yamlls import LanguageServer
from xresource.cli.main import main

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

# pydantic error codes of literal secrets (value_error), patterns and enums (literal_error).
WORDED = {"value_error", "string_pattern_mismatch", "literal_error"}
BAD = """\
name: Orders DB
type: postgresql
connect: later
connection_string: postgresql://app:hunter2@db:5432/app
password: hunter2
sslmode: sometimes
max_pool_size: many
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LanguageServer]:
    with LanguageServer(tmp_path_factory.mktemp("workspace")) as running:
        yield running


def write(folder: Path, name: str, text: str) -> Path:
    target = ROOT / "schemas" / "resource.schema.json"
    file = folder / name
    file.write_text(f"# yaml-language-server: $schema={os.path.relpath(target, folder)}\n{text}")
    return file


def cli_problems(file: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    main(["validate", "--format", "json", str(file)])
    return list(json.loads(capsys.readouterr().out)["problems"])


def lead(message: str) -> str:
    """A message up to its example (``... instead, e.g. password: ${env:ORDERS_PASSWORD}``)."""
    return message.split(" e.g. ", 1)[0]


def test_the_editor_flags_what_validate_flags_in_the_same_words(
    server: LanguageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "orders.yaml", BAD)
    expected = cli_problems(file, capsys)
    assert len(expected) >= 6, expected
    diagnostics = server.diagnostics(server.open(file), at_least=len(expected))
    # Every line CI flags, the editor flags.
    assert {int(str(p["line"])) for p in expected} <= {d["range"]["start"]["line"] + 1 for d in diagnostics}
    # Literal secrets, patterns and enums: the same words. (Type mismatches keep the editor's
    # own "Incorrect type" wording: a schema-wide message would also replace range errors.)
    editor = {(d["range"]["start"]["line"] + 1, lead(d["message"])) for d in diagnostics}
    worded = {(int(str(p["line"])), lead(str(p["message"]))) for p in expected if p["code"] in WORDED}
    assert len(worded) == 5
    assert worded <= editor, f"CI: {sorted(worded)}\neditor: {sorted(editor)}"
    messages = {lead(d["message"]) for d in diagnostics}
    assert "the URL holds a literal password; write a reference instead," in messages
    assert "literal secret; write a reference instead," in messages
    assert "Matches a schema that is not allowed." not in messages


def test_a_valid_manifest_has_no_diagnostics_in_either(
    server: LanguageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = (
        "name: orders\ntype: postgresql\nconnection_string: postgresql://app@${env:DB_HOST}:5432/app\n"
        "password: ${file:/run/secrets/db}\nsslmode: require\n"
    )
    bad_marker = write(tmp_path, "marker.yaml", "name: Bad\ntype: csv\nfile_path: x.csv\n")
    file = write(tmp_path, "good.yaml", good)
    assert cli_problems(file, capsys) == []
    uri = server.open(file)
    # The server publishes once per document; open a bad one after it so that a missing
    # publication for the good one cannot pass for "no diagnostics".
    marker_uri = server.open(bad_marker)
    published = server.publications_until(marker_uri)
    assert published.get(uri, []) == []
    assert published[marker_uri]


def test_hover_renders_markdown(server: LanguageServer, tmp_path: Path) -> None:
    file = write(tmp_path, "hover.yaml", BAD)
    uri = server.open(file)
    server.diagnostics(uri)
    line = file.read_text().splitlines().index("connect: later")
    text = server.hover(uri, line, 2)
    assert "`eager`" in text or "``eager``" in text, text
    assert "\\`" not in text, text


def test_the_modeline_init_writes_in_a_fresh_folder_resolves_in_the_editor(
    server: LanguageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No schemas/ anywhere: the editor still finds the schema (the installed package's)."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "resources.d/orders.yaml", "--type", "postgresql"]) == 0
    capsys.readouterr()
    file = tmp_path / "resources.d" / "orders.yaml"
    file.write_text(file.read_text() + "connect: later\n")
    diagnostics = server.diagnostics(server.open(file))
    assert [d["message"] for d in diagnostics] == ["Input should be 'eager' or 'lazy'"]
