"""The live registry: connected resources by name, hot reload, leases."""

from xresource.registry.diff import FieldChange
from xresource.registry.events import ReloadEvent, ReloadResult
from xresource.registry.registry import Registry
from xresource.registry.status import ResourceStatus

__all__ = ["FieldChange", "Registry", "ReloadEvent", "ReloadResult", "ResourceStatus"]
