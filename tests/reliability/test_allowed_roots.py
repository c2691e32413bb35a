"""``[registry] allowed_roots`` holds at every open, not only when a manifest is loaded.

Each path field a manifest can set (``file_path``, ``json_schema``, ``ca_file``,
``${file:...}`` targets; ``$schema`` is in test_hostile_files) is refused at
load when it points outside the roots, and refused again when the file is
opened later: a file replaced by a symlink to an outside file after the
registry started is never read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.support import ApiServer, rest_manifest
from xresource.errors import XResourceConnectionError
from xresource.manifests import load_manifests
from xresource.registry import Registry
from xresource.settings import RegistrySettings, Settings

OUTSIDE_TEXT = "id,secret\n1,outside-root-content-4711\n"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Settings]:
    """``root`` (allowed, holds the manifests and data) and ``outside`` (a file next to it)."""
    root = tmp_path / "root"
    (root / "m").mkdir(parents=True)
    outside = tmp_path / "outside.csv"
    outside.write_text(OUTSIDE_TEXT)
    settings = Settings(registry=RegistrySettings(allowed_roots=[root], health_interval=0, retry_initial=60))
    return root, outside, settings


def _swap_for_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("field", "manifest"),
    [
        ("file_path", "name: a\ntype: csv\nfile_path: {outside}\n"),
        ("json_schema", "name: a\ntype: json\nfile_path: a.json\njson_schema: {outside}\n"),
        ("ca_file", "name: a\ntype: rest_api\nendpoint: https://api.test/\nca_file: {outside}\n"),
        ("ca_file", "name: a\ntype: postgresql\nconnection_string: postgresql://app@db/app\nca_file: {outside}\n"),
        ("password", "name: a\ntype: postgresql\nconnection_string: postgresql://app@db/app\npassword: ${{file:{outside}}}\n"),
    ],
)
def test_each_path_field_outside_the_roots_is_refused_at_load(
    field: str, manifest: str, layout: tuple[Path, Path, Settings]
) -> None:
    root, outside, settings = layout
    (root / "m" / "a.yaml").write_text(manifest.format(outside=outside))
    [problem] = load_manifests(root / "m", settings).problems
    assert (problem.line, problem.field) == (manifest.count("\n"), field)  # the last line
    assert "outside the allowed roots" in problem.message


async def test_a_data_file_swapped_for_a_link_after_start_is_not_read(layout: tuple[Path, Path, Settings]) -> None:
    root, outside, settings = layout
    data = root / "a.csv"
    data.write_text("id,city\n1,paris\n")
    (root / "m" / "a.yaml").write_text(f"name: a\ntype: csv\nfile_path: {data}\n")
    async with Registry(root / "m", settings=settings) as registry:
        resource = registry.get("a")
        assert await resource.read() == [{"id": "1", "city": "paris"}]
        _swap_for_link(data, outside)
        with pytest.raises(XResourceConnectionError, match="outside the allowed roots") as caught:
            await resource.read()
        assert "outside-root-content" not in str(caught.value)
        with pytest.raises(XResourceConnectionError, match="outside the allowed roots"):
            async for _ in resource.read_stream(10):
                pass
        with pytest.raises(XResourceConnectionError, match="outside the allowed roots"):
            await resource.write([{"id": "2", "city": "rome"}])  # a write through the link, too
    assert outside.read_text() == OUTSIDE_TEXT


async def test_a_json_schema_swapped_for_a_link_is_refused_at_connect(layout: tuple[Path, Path, Settings]) -> None:
    root, outside, settings = layout
    (root / "a.json").write_text("[]")
    schema = root / "schema.json"
    schema.write_text('{"type": "array"}')
    (root / "m" / "a.yaml").write_text(f"name: a\ntype: json\nfile_path: {root / 'a.json'}\njson_schema: {schema}\n")
    [resource] = load_manifests(root / "m", settings).resources.values()
    _swap_for_link(schema, outside)
    with pytest.raises(XResourceConnectionError, match=r"json_schema .* outside the allowed roots"):
        await resource.connect()


async def test_a_ca_file_swapped_for_a_link_is_refused_at_connect(layout: tuple[Path, Path, Settings]) -> None:
    root, outside, settings = layout
    ca = root / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    (root / "m" / "a.yaml").write_text(rest_manifest("a", "https://127.0.0.1:1/", f"ca_file: {ca}"))
    [resource] = load_manifests(root / "m", settings).resources.values()
    _swap_for_link(ca, outside)
    with pytest.raises(XResourceConnectionError, match=r"ca_file .* outside the allowed roots"):
        await resource.connect()


async def test_a_secret_swapped_for_a_link_after_start_is_not_read(
    layout: tuple[Path, Path, Settings], api: ApiServer
) -> None:
    root, outside, settings = layout
    token = root / "token"
    token.write_text("token-one")
    (root / "m" / "api.yaml").write_text(
        rest_manifest("api", api.url, "auth_params:", f"  bearer_token: ${{file:{token}}}")
    )
    async with Registry(root / "m", settings=settings) as registry:
        old = registry.get("api")
        _swap_for_link(token, outside)
        await registry.reload()
        assert registry.get("api") is old  # the new version is refused; the last good one serves
        error = registry.status()["api"].error or ""
        assert "outside the allowed roots" in error
        assert "outside-root-content" not in error
    assert all("outside-root-content" not in auth for auth in api.authorizations)
