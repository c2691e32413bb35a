"""``ResourceFactory``: the table from type name to resource class.

Built-in types are listed as dotted paths and imported on first use, so
``import xresource`` stays light. Third-party types register through the
``xresource.resource_types`` entry-point group; they are kept as strings until
used, so a broken plugin cannot break ``import xresource``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, TypeAdapter

from xresource.errors import UnknownResourceTypeError, XResourceError

if TYPE_CHECKING:
    from xresource.resource import XResource

ENTRY_POINT_GROUP = "xresource.resource_types"


@dataclass(frozen=True, slots=True)
class TypeEntry:
    """Where a type's class lives and which extra brings its driver."""

    path: str
    extra: str | None
    drivers: tuple[str, ...] = ()


_B = "xresource.backends"
BUILTIN_TYPES: dict[str, TypeEntry] = {
    "csv": TypeEntry(f"{_B}.files.csv:CsvResource", None),
    "excel": TypeEntry(f"{_B}.files.excel:ExcelResource", "excel", ("openpyxl",)),
    "json": TypeEntry(f"{_B}.files.json:JsonResource", None),
    "kafka": TypeEntry(f"{_B}.streams.kafka:KafkaResource", "kafka", ("aiokafka",)),
    "mongodb": TypeEntry(f"{_B}.databases.mongodb:MongoResource", "mongodb", ("pymongo",)),
    "mqtt": TypeEntry(f"{_B}.streams.mqtt:MqttResource", "mqtt", ("aiomqtt",)),
    "mysql": TypeEntry(f"{_B}.databases.mysql:MySQLResource", "mysql", ("aiomysql",)),
    "postgresql": TypeEntry(f"{_B}.databases.postgresql:PostgresResource", "postgres", ("asyncpg",)),
    "rabbitmq": TypeEntry(f"{_B}.streams.rabbitmq:RabbitMQResource", "rabbitmq", ("aio_pika",)),
    "redis_pubsub": TypeEntry(f"{_B}.streams.redis_pubsub:RedisPubSubResource", "redis", ("redis",)),
    "rest_api": TypeEntry(f"{_B}.network.rest_api:RestApiResource", "rest", ("aiohttp",)),
    "sse": TypeEntry(f"{_B}.streams.sse:SseResource", "sse", ("httpx", "httpx_sse")),
    "websocket": TypeEntry(f"{_B}.streams.websocket:WebSocketResource", "websocket", ("websockets",)),
    "yaml": TypeEntry(f"{_B}.files.yaml:YamlResource", None),
}


class PluginLoadError(XResourceError):
    """Raised when a third-party resource type's entry point cannot be imported."""


class ResourceFactory:
    """Registers resource types and builds resources from their fields."""

    _paths: ClassVar[dict[str, TypeEntry]] = dict(BUILTIN_TYPES)
    _classes: ClassVar[dict[str, type[XResource]]] = {}
    _plugins_loaded: ClassVar[bool] = False

    @classmethod
    def register(cls, type_name: str, resource_class: type[XResource] | str) -> None:
        """Register a class (or a ``"module:Class"`` path, imported on first use)."""
        if isinstance(resource_class, str):
            cls._paths[type_name] = TypeEntry(resource_class, None)
            cls._classes.pop(type_name, None)
        else:
            cls._classes[type_name] = resource_class
            cls._paths.setdefault(type_name, TypeEntry(_dotted(resource_class), None))
        _union_adapter.cache_clear()

    @classmethod
    def unregister(cls, type_name: str) -> None:
        cls._classes.pop(type_name, None)
        if type_name in BUILTIN_TYPES:
            cls._paths[type_name] = BUILTIN_TYPES[type_name]
        else:
            cls._paths.pop(type_name, None)
        _union_adapter.cache_clear()

    @classmethod
    def known_types(cls) -> list[str]:
        cls._load_plugins()
        return sorted(cls._paths)

    @classmethod
    def entry(cls, type_name: str) -> TypeEntry:
        found = cls._paths.get(type_name)
        if found is not None:  # built-in or registered: plugins never override these (setdefault)
            return found
        cls._load_plugins()
        try:
            return cls._paths[type_name]
        except KeyError:
            raise UnknownResourceTypeError(type_name, cls.known_types()) from None

    @classmethod
    def get_class(cls, type_name: str) -> type[XResource]:
        """The class for ``type_name``, importing its module on first use."""
        found = cls._classes.get(type_name)
        if found is not None:
            return found
        entry = cls.entry(type_name)
        module_name, _, attr = entry.path.partition(":")
        try:
            resource_class: type[XResource] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginLoadError(f"resource type {type_name!r}: cannot load {entry.path!r}: {exc}") from exc
        cls._classes[type_name] = resource_class
        return resource_class

    @classmethod
    def create(cls, type_name: str, **fields: Any) -> XResource:
        """Build (but do not connect) a resource of ``type_name`` from its fields."""
        return cls.get_class(type_name).model_validate({**fields, "type": type_name})

    @classmethod
    def all_classes(cls) -> dict[str, type[XResource]]:
        return {name: cls.get_class(name) for name in cls.known_types()}

    @classmethod
    def union_adapter(cls) -> TypeAdapter[Any]:
        """A pydantic adapter validating any manifest, discriminated by ``type``."""
        return _union_adapter()

    @classmethod
    def _load_plugins(cls) -> None:
        if cls._plugins_loaded:
            return
        cls._plugins_loaded = True
        # Scanning installed distributions is slow; only unknown names and full listings need it.
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            cls._paths.setdefault(ep.name, TypeEntry(ep.value, None))

    @classmethod
    def reset(cls) -> None:
        """Forget registrations (for tests)."""
        cls._paths = dict(BUILTIN_TYPES)
        cls._classes = {}
        cls._plugins_loaded = False
        _union_adapter.cache_clear()


def _dotted(resource_class: type[Any]) -> str:
    return f"{resource_class.__module__}:{resource_class.__qualname__}"


@cache
def _union_adapter() -> TypeAdapter[Any]:
    from typing import Union

    classes = tuple(ResourceFactory.all_classes().values())
    union = Union[classes]  # type: ignore[valid-type]  # noqa: UP007 - built at run time
    return TypeAdapter(Annotated[union, Field(discriminator="type")])
