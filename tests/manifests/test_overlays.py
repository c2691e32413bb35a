"""Overlays: later folders change earlier ones field by field (docs/environments.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xresource.errors import Problem
from xresource.manifests.loader import ParseCache
from xresource.manifests.overlays import field_origins, load_layers
from xresource.settings import default_settings

API = """\
name: api
type: rest_api
endpoint: https://api.dev.internal/
headers:
  X-Env: dev
  X-Trace: "on"
retries: 2
tags: [core, http]
"""


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    base, prod = tmp_path / "resources.d", tmp_path / "overlays" / "prod"
    base.mkdir()
    prod.mkdir(parents=True)
    (base / "api.yaml").write_text(API)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.csv").write_text("id\n1\n")
    (tmp_path / "data" / "prod.csv").write_text("id\n2\n")
    (base / "orders.yaml").write_text("name: orders\ntype: csv\nfile_path: ../data/dev.csv\n")
    return base, prod


def load(base: Path, *overlays: Path, cache: ParseCache | None = None):  # type: ignore[no-untyped-def]
    return load_layers([base], list(overlays), default_settings(), parse_cache=cache)


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_scalars_and_lists_replace_mappings_merge_and_null_removes(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    (prod / "api.yaml").write_text(
        "name: api\nendpoint: https://api.prod.internal/\nheaders:\n  X-Env: prod\n  X-Trace: null\n"
        "  X-Region: eu\ntags: [prod]\nretries: null\n"
    )
    result = load(base, prod)
    assert result.problems == []
    api = result.resources["api"]
    assert str(api.endpoint) == "https://api.prod.internal/"
    assert api.headers == {"X-Env": "prod", "X-Region": "eu"}
    assert api.tags == ["prod"]  # a list is replaced, not appended to
    assert "retries" not in result.fields["api"]  # removed: the type's default applies
    assert api.manifest_path == base / "api.yaml"  # the resource is still the base's
    origins = field_origins(result, "api")
    assert origins["type"] == f"{base / 'api.yaml'}:2"
    assert origins["endpoint"] == f"{prod / 'api.yaml'}:2"
    assert origins["headers"] == f"{base / 'api.yaml'}:4"
    assert origins["headers.X-Env"] == f"{prod / 'api.yaml'}:4"
    assert origins["headers.X-Region"] == f"{prod / 'api.yaml'}:6"
    assert "headers.X-Trace" not in origins


def test_later_overlays_win_and_relative_paths_follow_their_file(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    eu = prod.parent / "prod-eu"
    eu.mkdir()
    (prod / "orders.yaml").write_text("name: orders\nfile_path: ../../data/prod.csv\ndescription: prod\n")
    (eu / "orders.toml").write_text('name = "orders"\ndescription = "prod, eu"\n')
    result = load(base, prod, eu)
    assert result.problems == []
    orders = result.resources["orders"]
    assert orders.file_path.resolve() == (base.parent / "data" / "prod.csv").resolve()
    assert orders.description == "prod, eu"
    assert field_origins(result, "orders")["description"] == f"{eu / 'orders.toml'}:2"


def test_a_full_manifest_adds_a_resource_or_replaces_one_of_another_type(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    (prod / "more.yaml").write_text(
        "name: audit\ntype: csv\nfile_path: ../../data/prod.csv\n---\n"
        "name: orders\ntype: postgresql\nconnection_string: postgresql://app@db.internal/orders\n"
    )
    result = load(base, prod)
    assert result.problems == []
    assert result.resources["audit"].manifest_path == prod / "more.yaml"
    orders = result.resources["orders"]
    assert orders.type == "postgresql"  # nothing of the csv manifest is left
    assert "file_path" not in result.fields["orders"]


def test_an_override_of_an_unknown_name_is_located_at_the_overlay(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    (prod / "api.yaml").write_text("# prod\nname: apii\nretries: 3\n")
    result = load(base, prod)
    (problem,) = result.problems
    assert (problem.file, problem.line, problem.code) == (str(prod / "api.yaml"), 2, "unknown_override")
    assert "overrides 'apii', which no earlier folder defines" in problem.message
    assert "apii" not in result.resources
    assert str(result.resources["api"].endpoint) == "https://api.dev.internal/"


def test_a_bad_value_in_an_overlay_names_the_overlay_file_and_line(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    (prod / "api.yaml").write_text(
        "name: api\nretries: many\nheaders:\n  X-Api-Key: hunter2secret\ntimeot: 3\n"
    )
    result = load(base, prod)
    shown = messages(result.problems)
    prod_file = prod / "api.yaml"
    assert any(s.startswith(f"{prod_file}:2:10: api: retries: ") for s in shown), shown
    assert any(s.startswith(f"{prod_file}:4:") and "literal secret" in s for s in shown), shown
    assert f"{prod_file}:5:1: api: timeot: unknown field; did you mean 'timeout'?" in shown
    assert all("hunter2secret" not in s for s in shown)
    assert "api" not in result.resources


def test_careless_overlay_documents(layout: tuple[Path, Path]) -> None:
    base, prod = layout
    (prod / "a.yaml").write_text("retries: 3\n---\n- a list\n---\nname: Not Valid\n")
    (prod / "b.yaml").write_text("name: api\nretries: 1\n")
    (prod / "c.yaml").write_text("name: api\nretries: 2\n")
    (prod / "d.yaml").write_text("name: api\nretries: [\n")
    shown = messages(load(base, prod).problems)
    assert (
        f"{prod / 'a.yaml'}:1:1: name: an overlay document needs the `name` of the resource it changes (or defines)"
        in shown
    )
    assert any(s.startswith(f"{prod / 'a.yaml'}:3:1: a manifest must be a mapping") for s in shown)
    assert any(s.startswith(f"{prod / 'a.yaml'}:5:1: name: invalid name: must match") for s in shown)
    assert any(s.startswith(f"{prod / 'c.yaml'}:1:1: api: name: duplicate name 'api'") for s in shown)
    assert any(s.startswith(f"{prod / 'd.yaml'}:") and "invalid YAML" in s for s in shown)


def test_the_parse_cache_is_not_changed_by_a_merge(layout: tuple[Path, Path]) -> None:
    """The live registry reuses parsed documents: merging must work on copies."""
    base, prod = layout
    (prod / "api.yaml").write_text("name: api\nheaders:\n  X-Env: prod\n")
    cache: ParseCache = {}
    assert load(base, prod, cache=cache).resources["api"].headers["X-Env"] == "prod"
    assert load(base, cache=cache).resources["api"].headers["X-Env"] == "dev"
    assert load(base, prod, cache=cache).resources["api"].headers == {"X-Env": "prod", "X-Trace": "on"}
