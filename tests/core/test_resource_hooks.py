"""The hooks the live registry uses on every resource: origin, live fields, copies."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from xresource import ResourceFactory
from xresource.resource import ManifestOrigin


def _csv(tmp_path: Path, **fields: object):
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    return ResourceFactory.create("csv", name="d", file_path=str(data), **fields)


def test_bind_manifest_sets_every_origin_property(tmp_path: Path) -> None:
    resource = _csv(tmp_path)
    assert resource.manifest_path is None
    assert resource.fingerprint is None
    origin = ManifestOrigin(tmp_path / "d.yaml", 3, "fields-hash", "fingerprint")
    resource.bind_manifest(origin)
    assert (resource.manifest_path, resource.manifest_line) == (tmp_path / "d.yaml", 3)
    assert (resource.manifest_hash, resource.fingerprint) == ("fields-hash", "fingerprint")
    assert resource.manifest_origin is origin


def test_description_and_tags_are_live_on_every_type() -> None:
    for type_name in ResourceFactory.known_types():
        live = ResourceFactory.get_class(type_name).live_fields()
        assert {"description", "tags"} <= live, type_name
        assert not live & {"name", "type"}, type_name


async def test_apply_live_update_changes_fields_and_refuses_others(tmp_path: Path) -> None:
    resource = _csv(tmp_path, description="old", tags=["a"])
    assert resource.metadata.description == "old"
    await resource.apply_live_update({"description": "new", "tags": ["b"]})
    assert (resource.description, resource.tags) == ("new", ["b"])
    assert resource.metadata.description == "new"
    with pytest.raises(ValueError, match="file_path"):
        await resource.apply_live_update({"file_path": str(tmp_path / "other.csv")})


async def test_a_copy_is_unconnected_and_keeps_its_origin(tmp_path: Path) -> None:
    resource = _csv(tmp_path)
    resource.bind_manifest(ManifestOrigin(tmp_path / "d.yaml", 1, "h", "f"))
    async with resource:
        for copied in (copy.copy(resource), copy.deepcopy(resource), resource.model_copy()):
            assert copied.state.value == "new"
            assert copied.manifest_path == tmp_path / "d.yaml"
            await copied.connect()
            assert await copied.read() == await resource.read()
            await copied.disconnect()
        assert resource.state.value == "ready"
