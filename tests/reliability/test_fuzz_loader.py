"""Fuzzing the manifest loader with Hypothesis.

Whatever the input (random structures, near-valid manifests, random text or
bytes, YAML or TOML), loading yields resources or located problems: never an
exception, never a hang, never unbounded memory.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xresource.errors import Problem
from xresource.factory import BUILTIN_TYPES, ResourceFactory
from xresource.manifests import load_manifests
from xresource.manifests.loader import validate_document
from xresource.manifests.toml_reader import read_toml
from xresource.manifests.yaml_reader import read_yaml
from xresource.resource import XResource
from xresource.settings import default_settings

FILE = Path("/fuzz/manifest.yaml")
TYPES = sorted(BUILTIN_TYPES)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _check(text: str, reader: Any = read_yaml) -> None:
    docs, problems = reader(FILE, text)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.file == str(FILE)
    for doc in docs:
        resource, doc_problems = validate_document(doc, default_settings())
        assert (resource is None) != (not doc_problems)
        if resource is not None:
            assert isinstance(resource, XResource)
        for problem in doc_problems:
            assert problem.line is not None
            assert problem.line >= 1


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest with a real type and a mix of that type's real fields and random values."""
    type_name = draw(st.sampled_from(TYPES))
    fields = list(ResourceFactory.get_class(type_name).model_json_schema(by_alias=True)["properties"])
    doc: dict[str, Any] = {"name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)), "type": type_name}
    for field in draw(st.lists(st.sampled_from(fields), max_size=6)):
        doc[field] = draw(values)
    return doc


@FUZZ
@given(values)
def test_random_structures_as_yaml(data: Any) -> None:
    import yaml

    _check(yaml.safe_dump(data))


@FUZZ
@given(near_valid())
def test_near_valid_manifests(doc: dict[str, Any]) -> None:
    import yaml

    _check(yaml.safe_dump(doc))


@FUZZ
@given(st.text(max_size=300))
def test_random_text_as_yaml_and_toml(text: str) -> None:
    _check(text)
    _check(text, read_toml)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


toml_scalars = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)


@FUZZ
@given(near_valid(), st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), toml_scalars | st.lists(toml_scalars, max_size=3), max_size=4))
def test_near_valid_toml(doc: dict[str, Any], extra: dict[str, Any]) -> None:
    lines = []
    for key, value in {**extra, **doc}.items():
        if isinstance(value, dict | type(None)) or (isinstance(value, list) and any(isinstance(v, dict | list | type(None)) for v in value)):
            continue
        lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    _check("\n".join(lines) + "\n", read_toml)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_through_the_folder_loader(tmp_path_factory: Any, raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "a.yaml").write_bytes(raw)
    (folder / "b.toml").write_bytes(raw)
    result = load_manifests(folder)
    assert all(isinstance(p, Problem) for p in result.problems)


def test_alias_expansion_memory_is_bounded() -> None:
    levels = ["a: &a [" + ",".join(['"lol"'] * 10) + "]"]
    for i in range(1, 12):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(levels) + "\n"  # 10**12 nodes if expanded
    tracemalloc.start()
    try:
        docs, problems = read_yaml(FILE, text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not docs
    assert "alias bomb" in problems[0].message
    assert peak < 50 * 1024 * 1024
