"""``--overlay`` on the commands: validate, ls (with --origins), check, plan (docs/environments.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xresource.cli.main import build_parser, main


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/dev.csv").write_text("id\n1\n")
    Path("data/prod.csv").write_text("id\n2\n")
    Path("resources.d").mkdir()
    Path("resources.d/orders.yaml").write_text(
        "name: orders\ntype: csv\nfile_path: ../data/dev.csv\ntags: [sales]\n"
    )
    Path("overlays/prod").mkdir(parents=True)
    Path("overlays/prod/orders.yaml").write_text(
        "name: orders\nfile_path: ../../data/prod.csv\ntags: [sales, prod]\n"
    )
    return "resources.d", "overlays/prod"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_locates_problems_in_the_overlay(
    layers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, prod = layers
    assert run(capsys, "validate", base, "--overlay", prod)[0] == 0
    Path(prod, "orders.yaml").write_text("name: orders\nhas_header: maybe\n---\nname: ghost\ntags: [x]\n")
    code, out, _ = run(capsys, "validate", base, "--overlay", prod)
    assert code == 1
    assert "overlays/prod/orders.yaml:2:13: orders: has_header: " in out
    assert (
        "overlays/prod/orders.yaml:4:1: ghost: name: overrides 'ghost', which no earlier folder defines"
        in out
    )
    code, _, err = run(capsys, "validate", base, "--overlay", "overlays/nope")
    assert code == 2
    assert "overlays/nope: no such file or directory" in err


def test_ls_shows_where_every_field_came_from(
    layers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, prod = layers
    code, out, _ = run(capsys, "ls", base, "--overlay", prod, "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["origins"] == {
        "name": "resources.d/orders.yaml:1",
        "type": "resources.d/orders.yaml:2",
        "file_path": "overlays/prod/orders.yaml:2",
        "tags": "overlays/prod/orders.yaml:3",
    }
    assert row["tags"] == ["sales", "prod"]
    code, out, _ = run(capsys, "ls", base, "--overlay", prod, "--origins")
    assert code == 0
    lines = out.splitlines()
    assert any(
        line.split() == ["file_path", '"../data/prod.csv"', "overlays/prod/orders.yaml:2"] for line in lines
    )
    assert any(line.split() == ["type", '"csv"', "resources.d/orders.yaml:2"] for line in lines)


def test_ls_shows_a_secret_an_overlay_sets_as_its_reference(
    layers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, prod = layers
    Path(base, "api.yaml").write_text("name: api\ntype: rest_api\nendpoint: https://api.test/\n")
    Path(prod, "api.yaml").write_text("name: api\nheaders:\n  Authorization: ${env:API_TOKEN}\n")
    code, out, _ = run(capsys, "ls", base, "--overlay", prod, "--origins")
    assert code == 0
    assert "${env:API_TOKEN}" in out  # the reference, as written
    assert any(
        line.startswith("headers ") and line.endswith("overlays/prod/api.yaml:2") for line in out.splitlines()
    )


def test_check_connects_what_the_overlays_describe(
    layers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, prod = layers
    Path("data/prod.csv").unlink()
    code, out, _ = run(capsys, "check", base, "--format", "json")
    assert code == 0
    code, out, _ = run(capsys, "check", base, "--overlay", prod, "--format", "json")
    assert code == 1  # the overlay's file is what it would read
    assert json.loads(out)[0]["state"] == "unhealthy"


def test_plan_shows_each_changed_field_and_where_it_is_written(
    layers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, prod = layers
    code, out, _ = run(capsys, "plan", base, "--overlay", prod, "--against", base)
    assert code == 0
    changed = '      ~ file_path: "../data/dev.csv" -> "../data/prod.csv"'
    assert f"{changed}  # forces replace" in out.splitlines()  # where it is written: when asked
    code, out, _ = run(capsys, "plan", base, "--overlay", prod, "--against", base, "--origins")
    assert f"{changed}  (overlays/prod/orders.yaml:2)  # forces replace" in out.splitlines()
    code, out, _ = run(capsys, "plan", base, "--overlay", prod, "--against", base, "--format", "json")
    (replaced,) = json.loads(out)["replaced"]
    assert replaced["origins"] == {
        "file_path": "overlays/prod/orders.yaml:2",
        "tags": "overlays/prod/orders.yaml:3",
    }
    code, out, _ = run(capsys, "plan", base, "--overlay", prod, "--against", base, "--against-overlay", prod)
    assert out.strip().endswith("0 to add, 0 to replace, 0 to remove, 1 unchanged, 0 problem(s)")


def test_serve_takes_overlays() -> None:
    args = build_parser().parse_args(
        ["serve", "resources.d", "--overlay", "overlays/prod", "--overlay", "overlays/eu"]
    )
    assert args.overlay == ["overlays/prod", "overlays/eu"]
