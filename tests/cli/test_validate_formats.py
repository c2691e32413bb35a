"""``xresource validate`` output formats: text, json, github annotations, JUnit XML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from xresource.cli.main import main

GOOD = "name: orders\ntype: postgresql\nconnection_string: postgresql://app@db:5432/app\n"
BAD = "name: users\ntype: postgresql\nconnection_string: postgresql://app@db/app\nmax_pool_size: many\nfoo: 1\n"
ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]+),line=(?P<line>\d+),col=(?P<col>\d+),title=(?P<title>[^:]+)::(?P<msg>.+)$")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "broken.toml").write_text('name = "x"\ntype = \n')
    return tmp_path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().out


def test_valid_folder_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 0
    assert out.strip() == "valid: 1 file, 1 resource, 0 problems in 0 files"


def test_text_lines(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["validate", str(folder)], capsys)
    lines = out.strip().splitlines()
    assert code == 1
    assert f"{folder / 'bad.yaml'}:4:16: users: max_pool_size: " in lines[0]
    assert lines[1] == f"{folder / 'bad.yaml'}:5:1: users: foo: unknown field"
    assert lines[2].startswith(f"{folder / 'broken.toml'}:2:8: invalid TOML")
    assert lines[-1] == "invalid: 3 files, 1 resource, 3 problems in 2 files"


def test_github_annotations_parse(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["validate", "--format", "github", str(folder)], capsys)
    assert code == 1
    lines = out.strip().splitlines()
    annotations = [ANNOTATION.match(line) for line in lines[:-1]]
    assert all(annotations), lines
    first = annotations[0]
    assert first is not None
    assert first["file"] == str(folder / "bad.yaml")
    assert (first["line"], first["col"]) == ("4", "16")
    assert first["title"] == "xresource users.max_pool_size"
    assert lines[-1].startswith("invalid: ")


def test_github_escapes_newlines_and_commas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "a,b.yaml"
    odd.write_text("name: x\ntype: nope\n")
    _, out = run(["validate", "--format", "github", str(tmp_path)], capsys)
    first = out.splitlines()[0]
    assert "file=" + str(tmp_path).replace(":", "%3A").replace(",", "%2C") + "/a%2Cb.yaml" in first
    assert "\n" not in first


def test_json_shape(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["validate", "--format", "json", str(folder)], capsys)
    report = json.loads(out)
    assert code == 1
    assert set(report) == {"valid", "files", "resources", "problem_count", "problems"}
    assert report["valid"] is False
    assert (report["files"], report["resources"], report["problem_count"]) == (3, 1, 3)
    for problem in report["problems"]:
        assert set(problem) == {"file", "line", "column", "resource", "field", "message", "code"}


def test_junit_counts_failures(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["validate", "--format", "junit", str(folder)], capsys)
    assert code == 1
    root = ET.fromstring(out)
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert len(cases[str(folder / "bad.yaml")].findall("failure")) == 2
    assert not cases[str(folder / "good.yaml")].findall("failure")


def test_declared_schema_modeline_is_honoured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A team schema declared for the editor is enforced in CI too."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["description"],
        "properties": {"tags": {"type": "array", "minItems": 1}},
    }
    (tmp_path / "team.schema.json").write_text(json.dumps(schema))
    (tmp_path / "a.yaml").write_text("# yaml-language-server: $schema=team.schema.json\n" + GOOD)
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 1
    assert "'description' is a required property (declared schema team.schema.json)" in out
    code, _ = run(["validate", "--no-declared-schema", str(tmp_path)], capsys)
    assert code == 0
    (tmp_path / "a.yaml").write_text(
        "# yaml-language-server: $schema=team.schema.json\n" + GOOD + "description: d\ntags: []\n"
    )
    code, out = run(["validate", "--format", "json", str(tmp_path)], capsys)
    [problem] = json.loads(out)["problems"]
    assert (problem["line"], problem["field"]) == (6, "tags")


def test_declared_schema_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"type": "object", "properties": {"name": {"maxLength": 3}}}))
    (tmp_path / "a.yaml").write_text("$schema: s.json\n" + GOOD)
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 1, out
    assert "is too long" in out


def test_missing_declared_schema_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("# yaml-language-server: $schema=nope.json\n" + GOOD)
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 1
    assert "nope.json" in out


@pytest.mark.parametrize(
    ("text", "where", "field"),
    [
        (
            "name: orders\ntype: postgresql\nconnection_string: postgresql://app@db/app\n"
            "options:\n  statement_timeout: 5\n  password: hunter2\n",
            ":6:13:",
            "options.password",
        ),
        (
            "name: api\ntype: rest_api\nendpoint: https://x.example/v1\n"
            "headers:\n  Accept: application/json\n  X-Api-Key: abc123\n",
            ":6:14:",
            "headers.X-Api-Key",
        ),
        (
            "name: api\ntype: rest_api\nendpoint: https://x.example/v1\n"
            "headers:\n  Accept: application/json\n  X-Upstream: https://u:pw@h/x\n",
            ":6:15:",
            "headers.X-Upstream",
        ),
        (
            "name: k\ntype: kafka\nbootstrap_servers: k:9092\n"
            "producer_config:\n  acks: all\n  linger_ms: 5\n  sasl_plain_password: abc\n",
            ":7:24:",
            "producer_config.sasl_plain_password",
        ),
    ],
)
def test_literal_secret_under_a_nested_key_points_at_that_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str, field: str
) -> None:
    """Not at the mapping's first key (it used to be reported a line or more too early)."""
    (tmp_path / "m.yaml").write_text(text)
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 1
    line = out.splitlines()[0]
    assert line.startswith(f"{tmp_path / 'm.yaml'}{where} ")
    assert f": {field}: " in line
    assert "hunter2" not in out
    assert "abc123" not in out


def test_literal_secret_under_a_toml_table_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text(
        'name = "orders"\ntype = "postgresql"\nconnection_string = "postgresql://app@db/app"\n\n'
        "[options]\nstatement_timeout = 5\npassword = \"hunter2\"\n"
    )
    code, out = run(["validate", str(tmp_path)], capsys)
    assert code == 1
    assert out.startswith(f"{tmp_path / 'm.toml'}:7:1: orders: options.password: ")


def test_missing_paths_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    for command in (["validate"], ["ls"], ["check"]):
        assert main([*command, str(tmp_path / "good.yaml"), str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"xresource {command[0]}: error: {tmp_path / 'nope'}: no such file or directory"
