"""``xresource init``: skeletons for every type that validate as written and document every field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from xresource import packaged_schemas
from xresource.cli.fields import describe_fields
from xresource.cli.main import main
from xresource.factory import BUILTIN_TYPES
from xresource.manifests import load_manifests
from xresource.schema import SCHEMA_BASE_ID

TYPES = sorted(BUILTIN_TYPES)


def init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["init", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def uncomment_defaults(text: str, type_name: str, toml: bool) -> str:
    """Turn every commented-out default into a real line (TOML's unset ones stay comments)."""
    names = "|".join(re.escape(f.name) for f in describe_fields(type_name))
    pattern = rf"^# (({names}) = .*)$" if toml else rf"^# (({names}): .*)$"
    out = []
    for line in text.splitlines():
        found = re.match(pattern, line)
        if found and "(default: unset)" not in line:
            line = found.group(1)
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_every_type_validates_as_written_and_with_every_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    folder = tmp_path / "resources.d"
    for type_name in TYPES:
        code, out, err = init(capsys, str(folder / f"{type_name}{suffix}"), "--type", type_name)
        assert code == 0, err
        assert f"{type_name} resource {type_name!r}" in out
    assert main(["validate", str(folder)]) == 0, capsys.readouterr().out
    loaded = load_manifests(folder)
    assert sorted(loaded.resources) == TYPES
    assert {r.name: r.type for r in loaded.resources.values()} == {t: t for t in TYPES}

    # Every optional field is there with its default: uncommented, the defaults must validate too.
    toml = suffix == ".toml"
    for file in folder.iterdir():
        file.write_text(uncomment_defaults(file.read_text(), file.stem, toml))
    capsys.readouterr()
    assert main(["validate", str(folder)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("type_name", TYPES)
def test_skeleton_lists_every_field_with_description(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], type_name: str
) -> None:
    path = tmp_path / f"{type_name}.yaml"
    assert init(capsys, str(path), "--type", type_name)[0] == 0
    text = path.read_text()
    data = yaml.safe_load(text)
    assert data["type"] == type_name
    for field in describe_fields(type_name):
        if field.deprecated:  # old spellings are accepted but not taught
            assert not re.search(rf"^# {re.escape(field.name)}: ", text, re.MULTILINE)
            continue
        commented = re.search(rf"^# {re.escape(field.name)}: ", text, re.MULTILINE)
        if field.required:
            assert field.name in data, field.name
        else:  # commented out with its default, or set (a type's main connection field)
            assert (field.name in data) != bool(commented), field.name
        # The description's first words appear as a comment (wrapped lines may split the rest).
        first_words = " ".join(field.description.split()[:4])
        if first_words and field.name not in ("type", "name"):
            assert first_words in text, (field.name, first_words)


def test_modeline_points_to_schemas_found_upward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "schemas" / "resource.schema.json"
    schema.parent.mkdir()
    schema.write_text("{}")
    target = tmp_path / "config" / "resources.d" / "user_db.yaml"
    assert init(capsys, str(target), "--type", "postgresql")[0] == 0
    first = target.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../schemas/resource.schema.json"
    ref = first.split("$schema=", 1)[1]
    assert (target.parent / ref).resolve() == schema.resolve()


def test_toml_declares_schema_with_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "resource.schema.json").write_text("{}")
    target = tmp_path / "orders.toml"
    assert init(capsys, str(target), "--type", "csv")[0] == 0
    data = tomllib.loads(target.read_text())
    assert data["$schema"] == "schemas/resource.schema.json"
    assert data["name"] == "orders"
    assert data["file_path"] == "data/orders.csv"


def test_fresh_repository_gets_the_shipped_schema_and_the_command_for_a_shared_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No schemas/ in the repository: the modeline resolves (to the installed package's schema)."""
    (tmp_path / "schemas").mkdir()  # above the repository root: not ours
    (tmp_path / "schemas" / "resource.schema.json").write_text("{}")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    target = Path("resources.d") / "api.yaml"
    code, out, _ = init(capsys, str(target), "--type", "rest_api")
    assert code == 0
    modeline = target.read_text().splitlines()[0]
    shipped = packaged_schemas.union_schema()
    assert shipped is not None
    assert modeline == f"# yaml-language-server: $schema={shipped.as_posix()}"
    assert Path(modeline.split("=", 1)[1]).is_file()
    assert SCHEMA_BASE_ID not in target.read_text()  # an unpublished URL resolves nowhere
    assert "note: the modeline points at the schema inside the installed package" in out
    assert "run: xresource schema --out schemas and set the first line to: " in out
    assert main(["validate", str(target)]) == 0
    capsys.readouterr()

    # Following the advice gives a modeline that works on every machine.
    advised = out.rsplit("set the first line to: ", 1)[1].strip()
    assert advised == "# yaml-language-server: $schema=../schemas/resource.schema.json"
    assert main(["schema", "--out", "schemas"]) == 0
    target.write_text("\n".join([advised, *target.read_text().splitlines()[1:]]) + "\n")
    assert main(["validate", str(target)]) == 0
    second = Path("resources.d") / "orders.yaml"
    code, out, _ = init(capsys, str(second), "--type", "csv")
    assert second.read_text().splitlines()[0] == advised
    assert "note:" not in out


def test_outside_git_the_advice_names_the_working_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = init(capsys, "resources.d/orders.yaml", "--type", "csv")
    assert code == 0
    assert "run: xresource schema --out schemas and set the first line to: " in out
    assert out.rstrip().endswith("$schema=../schemas/resource.schema.json")


def test_declared_schema_is_used_by_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The modeline init writes is honoured: a stricter schema there is enforced by validate."""
    schema = tmp_path / "schemas" / "resource.schema.json"
    schema.parent.mkdir()
    schema.write_text('{"type": "object", "required": ["description"]}')
    target = tmp_path / "resources.d" / "orders.yaml"
    assert init(capsys, str(target), "--type", "csv")[0] == 0
    capsys.readouterr()
    assert main(["validate", str(target)]) == 1
    assert "'description' is a required property (declared schema ../schemas/resource.schema.json)" in (
        capsys.readouterr().out
    )


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "orders.yaml"
    target.write_text("name: orders\n")
    code, _, err = init(capsys, str(target), "--type", "csv")
    assert code == 1
    assert "already exists" in err
    assert target.read_text() == "name: orders\n"


def test_name_from_file_name_and_explicit_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(capsys, str(tmp_path / "Orders DB.yaml"), "--type", "csv")[0] == 0
    assert yaml.safe_load((tmp_path / "Orders DB.yaml").read_text())["name"] == "orders_db"
    assert init(capsys, str(tmp_path / "x.yml"), "--type", "csv", "--name", "sales.eu")[0] == 0
    assert yaml.safe_load((tmp_path / "x.yml").read_text())["name"] == "sales.eu"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "postgres"], "unknown resource type 'postgres'; did you mean 'postgresql'?"),
        (["--type", "csv", "--name", "Bad Name"], "'Bad Name' is not a valid resource name"),
        (["--type", "csv", "--name", "1st"], "'1st' is not a valid resource name"),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    target = tmp_path / "r.yaml"
    code, _, err = init(capsys, str(target), *args)
    assert code == 2
    assert message in err
    assert not target.exists()


def test_unusable_file_name_or_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = init(capsys, str(tmp_path / "123.yaml"), "--type", "csv")
    assert (code, "pass --name" in err) == (2, True)
    code, _, err = init(capsys, str(tmp_path / "orders.json"), "--type", "csv")
    assert (code, "must end in .yaml, .yml or .toml" in err) == (2, True)
    assert not list(tmp_path.iterdir())
