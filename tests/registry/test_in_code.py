"""Registries from manifests given in code (docs/testing.md): validated as files are, reloaded by replace."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.support import fast_settings
from xresource.errors import ManifestError, XResourceStateError
from xresource.registry import Registry
from xresource.resource import State


def orders(path: str = "orders.csv", **extra: object) -> dict[str, object]:
    return {"name": "orders", "type": "csv", "file_path": path, **extra}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "orders.csv").write_text("id,total\n1,9.50\n")
    (tmp_path / "semi.csv").write_text("id;total\n2;3\n")
    return tmp_path


async def test_dicts_yaml_and_toml_text_become_connected_resources(folder: Path) -> None:
    yaml_text = """
        name: semi
        type: csv
        file_path: semi.csv
        delimiter: ";"
    """
    async with Registry.from_manifests(
        [orders(), yaml_text], base_dir=folder, settings=fast_settings()
    ) as registry:
        assert registry.names() == ["orders", "semi"]
        assert await registry.get("orders").read() == [{"id": "1", "total": "9.50"}]
        assert await registry.get("semi").read() == [{"id": "2", "total": "3"}]
        status = registry.status()
        assert status["orders"].path == "<manifest 1>"
        assert status["semi"].path == "<manifest 2>"
        assert status["orders"].fields["file_path"] == str(folder / "orders.csv")  # fixed at construction
    toml_text = 'name = "orders"\ntype = "csv"\nfile_path = "orders.csv"\n'
    async with Registry.from_manifests(toml_text, base_dir=folder, format="toml") as registry:
        assert await registry.get("orders").read() == [{"id": "1", "total": "9.50"}]


async def test_a_yaml_text_may_hold_several_documents(folder: Path) -> None:
    text = "name: a\ntype: csv\nfile_path: orders.csv\n---\nname: b\ntype: csv\nfile_path: orders.csv\n"
    async with Registry.from_manifests([text], base_dir=folder, settings=fast_settings()) as registry:
        assert registry.names() == ["a", "b"]


async def test_problems_name_the_manifest_line_and_field_and_nothing_connects(folder: Path) -> None:
    yaml_text = """
        name: semi
        type: csv
        file_path: semi.csv
        delimter: ";"
    """
    registry = Registry.from_manifests(
        [orders(max_rows=3), yaml_text, orders()], base_dir=folder, settings=fast_settings()
    )
    with pytest.raises(ManifestError) as caught:
        await registry.start()
    shown = [str(p) for p in caught.value.problems]
    # A dict has no lines: its problems name the manifest and the field.
    assert "<manifest 1>: orders: max_rows: unknown field" in shown
    # Text keeps its lines as written (the leading line break is line 1).
    assert "<manifest 2>:5:1: semi: delimter: unknown field; did you mean 'delimiter'?" in shown
    assert "<manifest 3>: orders: name: duplicate name 'orders'; <manifest 1> defines it already" in shown
    assert registry.names() == []


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("name: x\ntype: csv\nfile_path: [\n", "<manifest 1>:4:1: invalid YAML"),
        ("- just\n- a list\n", "<manifest 1>:1:1: a manifest must be a mapping of fields, got list"),
        ("name: x\ntype: !!python/object:os.system x\n", "<manifest 1>:2:7: tag"),
        ({"name": "x"}, "<manifest 1>: x: type: required field 'type' is missing"),
        ({"name": "x", "type": "postgres"}, "<manifest 1>: x: type: unknown resource type 'postgres'"),
        (
            {"name": "x", "type": "postgresql", "connection_string": "postgresql://app:hunter2@db/app"},
            "<manifest 1>: x: connection_string:",
        ),
    ],
)
async def test_careless_or_hostile_manifests_are_problems(
    manifest: object, expected: str, folder: Path
) -> None:
    registry = Registry.from_manifests([manifest], base_dir=folder)  # type: ignore[list-item]
    with pytest.raises(ManifestError) as caught:
        await registry.start()
    text = str(caught.value)
    assert expected in text
    assert "hunter2" not in text


def test_what_is_not_a_manifest_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="manifest 2 is a int"):
        Registry.from_manifests([orders(), 42])  # type: ignore[list-item]


async def test_replace_manifests_is_the_reload(folder: Path) -> None:
    registry = Registry.from_manifests([orders(), orders("semi.csv") | {"name": "semi"}], base_dir=folder)
    async with registry:
        first, semi = registry.get("orders"), registry.get("semi")
        result = await registry.replace_manifests(
            [orders(description="now described"), orders() | {"name": "new"}]
        )
        assert (result.updated, result.added, result.removed) == (["orders"], ["new"], ["semi"])
        assert registry.get("orders") is first  # a live field: updated in place
        assert first.description == "now described"
        await registry.wait_closed()
        assert semi.state is State.CLOSED

        # An invalid manifest changes nothing that runs; its problem is reported.
        result = await registry.replace_manifests([orders(delimter=";"), orders() | {"name": "new"}])
        assert result.rejected == ["orders"]
        assert registry.get("orders") is first
        assert "<manifest 1>" in registry.status()["orders"].pending  # type: ignore[operator]

        result = await registry.replace_manifests(
            [orders("semi.csv", delimiter=";"), orders() | {"name": "new"}]
        )
        assert result.replaced == ["orders"]
        assert await registry.get("orders").read() == [{"id": "2", "total": "3"}]


async def test_replace_manifests_before_start_replaces_what_start_reads(folder: Path) -> None:
    registry = Registry.from_manifests([orders()], base_dir=folder)
    await registry.replace_manifests([orders() | {"name": "other"}])
    async with registry:
        assert registry.names() == ["other"]


async def test_replace_manifests_is_only_for_registries_from_code(tmp_path: Path) -> None:
    with pytest.raises(XResourceStateError, match="from_manifests"):
        await Registry(tmp_path).replace_manifests([orders()])
