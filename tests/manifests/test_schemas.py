"""Generated JSON Schemas: committed and current, valid, and agreeing with the models.

Editors (the YAML language server) validate with draft-07; the schemas must
give the same verdicts under Draft 7 and Draft 2020-12, and the same verdicts
as the pydantic models (the source of truth) on a corpus of manifests.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from xresource.cli.main import main
from xresource.factory import BUILTIN_TYPES, ResourceFactory
from xresource.schema import all_schemas, resource_schema
from xresource.schema_editor import NO_LITERAL_URL_PASSWORD
from xresource.secrets import LITERAL_URL_PASSWORD_PATTERN, REFERENCE_PATTERN

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--check", str(ROOT / "schemas")]) == 0, capsys.readouterr().err


def test_schema_check_detects_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert main(["schema", "--check", str(tmp_path)]) == 0
    (tmp_path / "csv.schema.json").write_text("{}")
    (tmp_path / "kafka.schema.json").unlink()
    assert main(["schema", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "csv.schema.json" in err
    assert "kafka.schema.json" in err


def test_one_file_per_type_plus_the_union() -> None:
    names = set(all_schemas())
    assert names == {f"{t}.schema.json" for t in ResourceFactory.known_types()} | {"resource.schema.json"}


@pytest.mark.parametrize("name", [*sorted(f"{t}.schema.json" for t in BUILTIN_TYPES), "resource.schema.json"])
def test_schemas_are_valid_under_both_drafts(name: str) -> None:
    schema = json.loads(all_schemas()[name])
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft202012Validator.check_schema(schema)


def _examples() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for folder in (ROOT / "examples" / "manifests", ROOT / "resources.d"):
        for path in sorted(folder.glob("*.y*ml")):
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
        for path in sorted(folder.glob("*.toml")):
            docs.append(tomllib.loads(path.read_text()))
    return docs


def _mutations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Variants of a valid manifest, some valid and most not."""
    out: list[tuple[str, dict[str, Any]]] = [("as is", doc)]
    def variant(label: str, change: Any) -> None:
        new = copy.deepcopy(doc)
        change(new)
        out.append((label, new))
    variant("unknown field", lambda d: d.update(no_such_field=1))
    variant("no name", lambda d: d.pop("name"))
    variant("no type", lambda d: d.pop("type"))
    variant("bad name", lambda d: d.update(name="Bad Name"))
    variant("name too long", lambda d: d.update(name="a" * 64))
    variant("tags not a list", lambda d: d.update(tags="core"))
    variant("tag not a string", lambda d: d.update(tags=[1]))
    variant("lazy", lambda d: d.update(connect="lazy"))
    variant("bad connect", lambda d: d.update(connect="later"))
    variant("other type", lambda d: d.update(type="csv" if d["type"] != "csv" else "json"))
    variant("unknown type", lambda d: d.update(type="nope"))
    variant("description null", lambda d: d.update(description=None))
    for key, value in doc.items():
        if key in ("name", "type"):
            continue
        if isinstance(value, str):
            variant(f"{key} as a number", lambda d, k=key: d.update({k: 12}))
            if "://" in value:
                scheme = value.split("://", 1)[0]
                variant(f"{key} literal password", lambda d, k=key, s=scheme: d.update({k: f"{s}://u:pw@h:1/x"}))
        elif isinstance(value, bool):
            variant(f"{key} as a string", lambda d, k=key: d.update({k: "maybe"}))
        elif isinstance(value, int | float):
            variant(f"{key} as text", lambda d, k=key: d.update({k: "many"}))
            variant(f"{key} negative", lambda d, k=key: d.update({k: -1}))
        elif isinstance(value, list):
            variant(f"{key} as a mapping", lambda d, k=key: d.update({k: {"a": 1}}))
    return out


def _model_verdict(doc: dict[str, Any]) -> bool:
    try:
        ResourceFactory.union_adapter().validate_python(doc)
    except ValidationError:
        return False
    return True


def test_examples_exist_for_every_type() -> None:
    assert {d["type"] for d in _examples()} == set(ResourceFactory.known_types())


def test_draft7_draft2020_and_models_agree() -> None:
    schema = resource_schema()
    draft7 = jsonschema.Draft7Validator(schema)
    draft2020 = jsonschema.Draft202012Validator(schema)
    disagreements = []
    checked = 0
    for example in _examples():
        for label, doc in _mutations(example):
            by_model = _model_verdict(doc)
            by_7 = draft7.is_valid(doc)
            by_2020 = draft2020.is_valid(doc)
            checked += 1
            if not by_model == by_7 == by_2020:
                disagreements.append((example["name"], label, by_model, by_7, by_2020))
    assert checked > 250
    assert not disagreements, "\n".join(map(str, disagreements))


@pytest.mark.parametrize("type_name", sorted(BUILTIN_TYPES))
def test_every_field_has_a_description(type_name: str) -> None:
    schema = json.loads(all_schemas()[f"{type_name}.schema.json"])
    missing = [k for k, v in schema["properties"].items() if not v.get("description") and "$ref" not in v]
    assert not missing, f"{type_name}: fields without description: {missing}"


def _nodes(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def test_editor_keywords_hover_and_messages() -> None:
    """What the YAML language server reads: Markdown hover text and the CLI's messages."""
    schema = json.loads(all_schemas()["resource.schema.json"])
    nodes = list(_nodes(schema))
    described = [n for n in nodes if isinstance(n.get("description"), str)]
    assert len(described) > 100
    assert all(n["markdownDescription"] == n["description"] for n in described)
    # A failed `not` can only say "Matches a schema that is not allowed."; none is left.
    assert not [n for n in nodes if "not" in n]
    assert all(n.get("patternErrorMessage") for n in nodes if "pattern" in n)
    assert all(n.get("errorMessage") for n in nodes if "enum" in n)
    secrets = [n["patternErrorMessage"] for n in nodes if n.get("pattern") == REFERENCE_PATTERN]
    assert "literal secret; write a reference instead, e.g. password: ${env:NAME} or ${file:/run/secrets/name}" in secrets
    assert schema["properties"]["type"]["errorMessage"].startswith("unknown resource type; known types: csv, ")


def test_the_url_password_pattern_means_what_not_meant() -> None:
    """The rewritten pattern accepts exactly the strings the `not` form accepted."""
    import re

    rewritten = re.compile(NO_LITERAL_URL_PASSWORD)
    negated = re.compile(LITERAL_URL_PASSWORD_PATTERN)
    samples = [
        "postgresql://app:pw@db/app", "postgresql://app@db/app", "postgresql://app:${env:PW}@db/app",
        "redis://:pw@h:6379", "redis://:${file:/s}@h", "mqtt://h:1883", "https://u:p@h/x?y=1",
        "a\nb://u:p@h", "no url", "", "x://u:p${env:A}@h", "x://u:${env:A}p@h",
    ]
    for sample in samples:
        assert (rewritten.search(sample) is not None) == (negated.search(sample) is None), sample
