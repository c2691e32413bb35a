"""ResourceFactory: built-ins, registration, plugins and missing extras."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import traceback
from typing import Literal

import pydantic
import pytest

from xresource import (
    ResourceFactory,
    UnknownResourceTypeError,
    XResource,
    XResourceError,
    XResourceValidationError,
)
from xresource.errors import MissingDependencyError
from xresource.factory import BUILTIN_TYPES, PluginLoadError

ALL_TYPES = {
    "csv",
    "excel",
    "json",
    "yaml",
    "mongodb",
    "postgresql",
    "mysql",
    "rest_api",
    "websocket",
    "redis_pubsub",
    "kafka",
    "rabbitmq",
    "mqtt",
    "sse",
}


class Probe(XResource):
    type: Literal["probe"] = "probe"
    size: int = 1


def test_builtin_types_are_the_fourteen_of_the_design() -> None:
    assert set(ResourceFactory.known_types()) == ALL_TYPES
    for name, cls in ResourceFactory.all_classes().items():
        assert cls.model_fields["type"].default == name
        assert issubclass(cls, XResource)


def test_register_and_create() -> None:
    ResourceFactory.register("probe", Probe)
    made = ResourceFactory.create("probe", name="p1", size=3)
    assert isinstance(made, Probe)
    assert made.size == 3
    assert "probe" in ResourceFactory.known_types()


def test_register_by_dotted_path_is_lazy() -> None:
    ResourceFactory.register("probe", f"{__name__}:Probe")
    assert ResourceFactory.get_class("probe") is Probe


def test_unknown_type_lists_known_types() -> None:
    with pytest.raises(UnknownResourceTypeError) as info:
        ResourceFactory.create("postgress", name="x")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, XResourceError)
    assert "postgresql" in str(info.value)
    assert "csv" in str(info.value)


def test_broken_plugin_path_gives_clear_error() -> None:
    ResourceFactory.register("broken", "no_such_module_xyz:Thing")
    with pytest.raises(PluginLoadError, match="broken"):
        ResourceFactory.get_class("broken")


def test_entry_point_group_registers_third_party_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = tmp_path / "probe_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[xresource.resource_types]\nprobe = probe_plugin:Probe\n")
    (tmp_path / "probe_plugin.py").write_text(
        "from typing import Literal\nfrom xresource import XResource\n"
        "class Probe(XResource):\n    type: Literal['probe'] = 'probe'\n"
    )
    code = (
        "from xresource import ResourceFactory\n"
        "print('probe' in ResourceFactory.known_types(), ResourceFactory.create('probe', name='a').name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "a"]


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocking the driver's import stands for an environment without the extra."""
    for type_name, entry in BUILTIN_TYPES.items():
        if not entry.drivers:
            continue
        for driver in entry.drivers:
            monkeypatch.setitem(sys.modules, driver, None)
        from xresource._optional import require

        with pytest.raises(MissingDependencyError) as info:
            require(entry.drivers[0], entry.extra or "", type_name=type_name)
        assert f"pip install 'xresource[{entry.extra}]'" in str(info.value)
        assert isinstance(info.value, ImportError)


def test_missing_driver_at_connect_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    resource = ResourceFactory.create(
        "postgresql", name="db", connection_string="postgresql://app@127.0.0.1:5432/test"
    )
    with pytest.raises(MissingDependencyError, match=r"xresource\[postgres\]"):
        asyncio.run(resource.connect())


def test_create_with_bad_fields_raises_our_validation_error_naming_every_field() -> None:
    with pytest.raises(XResourceValidationError) as info:
        ResourceFactory.create(
            "postgresql", name="db", connection_string="postgresql://h/db", max_pool_size=0, pool=3
        )
    error = info.value
    assert isinstance(error, XResourceError)
    assert isinstance(error, ValueError)
    assert not isinstance(error, pydantic.ValidationError)
    assert {p.field for p in error.problems} == {"max_pool_size", "pool"}
    assert "postgresql resource 'db'" in str(error)
    assert "max_pool_size: Input should be greater than or equal to 1" in str(error)
    assert "pool: unknown field" in str(error)
    with pytest.raises(XResourceValidationError, match="name: required field is missing"):
        ResourceFactory.create("csv", file_path="x.csv")


@pytest.mark.parametrize(
    ("type_name", "fields"),
    [
        ("postgresql", {"connection_string": "postgresql://app:Hunter2-pw@db/app"}),
        ("rest_api", {"endpoint": "https://h", "headers": {"Authorization": "Bearer Hunter2-pw"}}),
        ("rest_api", {"endpoint": "https://h", "auth_params": {"bearer_token": "Hunter2-pw"}}),
        ("mysql", {"connection_string": "mysql://h/db", "password": "Hunter2-pw"}),
        ("postgresql", {"connection_string": "postgresql://h/db", "min_pool_size": "Hunter2-pw"}),
    ],
)
def test_create_never_echoes_a_value(type_name: str, fields: dict[str, object]) -> None:
    with pytest.raises(XResourceValidationError) as info:
        ResourceFactory.create(type_name, name="r", **fields)
    shown = "".join(traceback.format_exception(info.value)) + repr(info.value.problems)
    assert "Hunter2" not in shown
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
