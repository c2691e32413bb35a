"""The reload diff on its own (pure: no I/O), and ``xresource plan`` giving the same answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.registry.support import csv_manifest
from xresource.cli.main import main
from xresource.errors import Problem
from xresource.registry.diff import Desired, Version, diff, shown

LIVE = frozenset({"description", "tags"})


def version(name: str, path: str = "/m/a.yaml", type_: str = "postgresql", **fields: Any) -> Version:
    written = {"name": name, "type": type_, **fields}
    return Version(
        name=name,
        type=type_,
        path=path,
        manifest_hash=json.dumps(written, sort_keys=True),
        fields=written,
        folder="/m",
        secrets={},
        live=LIVE,
    )


def test_each_kind_of_change() -> None:
    running = {
        "same": version("same", "/m/same.yaml", max_pool_size=5),
        "pool": version("pool", "/m/pool.yaml", max_pool_size=5),
        "words": version("words", "/m/words.yaml", description="old"),
        "gone": version("gone", "/m/gone.yaml"),
        "kept": version("kept", "/m/kept.yaml"),
    }
    desired = Desired(
        versions={
            "same": version("same", "/m/same.yaml", max_pool_size=5),
            "pool": version("pool", "/m/pool.yaml", max_pool_size=10),
            "words": version("words", "/m/words.yaml", description="new", tags=["a"]),
            "new": version("new", "/m/new.yaml"),
        },
        problems=[Problem("/m/kept.yaml", 3, 1, "invalid YAML")],
        names_by_file={"/m/kept.yaml": []},
    )
    result = diff(running, desired)
    assert {
        k: result.names(k) for k in ("added", "replaced", "updated", "removed", "rejected", "unchanged")
    } == {
        "added": ["new"],
        "replaced": ["pool"],
        "updated": ["words"],
        "removed": ["gone"],
        "rejected": ["kept"],
        "unchanged": ["same"],
    }
    [pool] = result.of_kind("replaced")
    assert [(f.field, f.old, f.new, f.live) for f in pool.fields] == [("max_pool_size", 5, 10, False)]
    [words] = result.of_kind("updated")
    assert [(f.field, f.old, f.new) for f in words.fields] == [
        ("description", "old", "new"),
        ("tags", None, ["a"]),
    ]
    assert words.describe_fields() == 'description: "old" -> "new", tags: null -> ["a"]'
    [kept] = result.of_kind("rejected")
    assert kept.errors == ("/m/kept.yaml:3:1: invalid YAML",)


def test_the_result_is_json_with_a_stable_shape() -> None:
    running = {"a": version("a", connection_string="postgresql://app:${env:A_PW}@db/app")}
    desired = Desired(versions={"a": version("a", connection_string="postgresql://app:${env:B_PW}@db/app")})
    data = json.loads(json.dumps(diff(running, desired).as_dict()))
    assert set(data) == {
        "added",
        "replaced",
        "updated",
        "removed",
        "rejected",
        "unchanged",
        "held",
        "problems",
    }
    [change] = data["replaced"]
    assert set(change) == {"name", "kind", "type", "path", "fields", "secrets_rotated", "errors"}
    assert change["fields"] == [
        {
            "field": "connection_string",
            "old": "postgresql://app:${env:A_PW}@db/app",  # a secret shows as its reference
            "new": "postgresql://app:${env:B_PW}@db/app",
            "live": False,
        }
    ]


def test_secrets_show_as_references_and_literals_are_masked() -> None:
    assert shown("postgresql://app:hunter2@db/app") == "postgresql://app:***@db/app"
    assert shown("postgresql://app:hunter2${env:X}@db/app") == "postgresql://app:***@db/app"
    assert shown("redis://db/0?password=hunter2&db=1") == "redis://db/0?password=***&db=1"
    assert shown({"Authorization": "Bearer hunter2", "X-Token": "${file:/run/t}"}) == {
        "Authorization": "***",
        "X-Token": "${file:/run/t}",
    }
    assert shown("hunter2", "password") == "***"
    assert shown("${env:PW}", "password") == "${env:PW}"


def test_a_rotated_secret_file_replaces_and_says_which() -> None:
    old = version("a", password="${file:/run/pw}")
    new = version("a", password="${file:/run/pw}")
    running = {"a": Version(**{**_as_kwargs(old), "secrets": {"${file:/run/pw}": "digest-1"}})}
    desired = Desired(
        versions={"a": Version(**{**_as_kwargs(new), "secrets": {"${file:/run/pw}": "digest-2"}})}
    )
    [change] = diff(running, desired).of_kind("replaced")
    assert change.fields == ()
    assert change.secrets_rotated == ("${file:/run/pw}",)
    assert "digest" not in json.dumps(change.as_dict())


def test_a_cosmetic_edit_with_a_rotated_secret_is_a_replace() -> None:
    running = {"a": Version(**{**_as_kwargs(version("a", description="x")), "secrets": {"r": "1"}})}
    desired = Desired(
        versions={"a": Version(**{**_as_kwargs(version("a", description="y")), "secrets": {"r": "2"}})}
    )
    assert diff(running, desired).names("replaced") == ["a"]


@pytest.mark.parametrize("names", [[], ["b"]], ids=["emptied", "other-name-only"])
def test_a_file_that_declares_nothing_keeps_what_runs(names: list[str]) -> None:
    running = {"a": version("a", "/m/a.yaml")}
    desired = Desired(versions={}, names_by_file={"/m/a.yaml": names})
    result = diff(running, desired)
    if names:  # the entry was removed while the file defines another: on purpose
        assert result.names("removed") == ["a"]
        return
    assert result.names("rejected") == ["a"]
    [problem] = result.problems
    assert problem.file == "/m/a.yaml"
    assert "defines no resources now (it defined a)" in problem.message
    assert "delete the file" in problem.message


def test_a_file_being_written_holds_what_runs_and_adds_nothing() -> None:
    running = {"a": version("a", "/m/a.yaml", description="v1")}
    desired = Desired(versions={}, names_by_file={}, held_files=frozenset({"/m/a.yaml"}))
    result = diff(running, desired)
    assert result.names("unchanged") == ["a"]
    assert result.held == ["a"]
    assert result.names("removed") == []


def test_a_type_change_is_a_replace() -> None:
    running = {"a": version("a", type_="mysql")}
    desired = Desired(versions={"a": version("a", type_="postgresql")})
    [change] = diff(running, desired).of_kind("replaced")
    assert [(f.field, f.old, f.new) for f in change.fields] == [("type", "mysql", "postgresql")]


def _as_kwargs(v: Version) -> dict[str, Any]:
    return {name: getattr(v, name) for name in Version.__dataclass_fields__}


def test_plan_uses_the_same_diff(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    (base / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "description: old"))
    (head / "a.yaml").write_text(csv_manifest("a", data / "a.csv", "description: new"))
    (base / "b.yaml").write_text(csv_manifest("b", data / "a.csv"))
    (head / "b.yaml").write_text(csv_manifest("b", data / "b.csv"))
    assert main(["plan", str(head), "--against", str(base), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    [updated] = plan["updated"]
    assert updated["name"] == "a"
    assert updated["fields"] == [
        {"field": "description", "old": "old", "new": "new", "live": True, "sign": "~"}
    ]
    [replaced] = plan["replaced"]
    assert replaced["fields"][0]["field"] == "file_path"
    assert main(["plan", str(head), "--against", str(base)]) == 0
    out = capsys.readouterr().out
    assert "~   update in place  a (csv)" in out
    assert out.strip().endswith(
        "plan: 0 to add, 1 to replace, 1 to update in place, 0 to remove, 0 unchanged, 0 problem(s)"
    )
