"""xresource: a declarative, hot-reloading registry of connected, pooled resources.

``import xresource`` loads pydantic and the core only; backend drivers are
imported when a resource of their type first connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xresource.errors import (
    ManifestError,
    MissingDependencyError,
    Problem,
    UnknownResourceTypeError,
    XResourceAuthenticationError,
    XResourceConnectionError,
    XResourceDataError,
    XResourceError,
    XResourceIntegrityError,
    XResourceNotFoundError,
    XResourcePermissionError,
    XResourcePoolExhaustedError,
    XResourceQueryError,
    XResourceRequestError,
    XResourceSecretError,
    XResourceStateError,
    XResourceSyntaxError,
    XResourceTimeoutError,
    XResourceUnsupportedError,
    XResourceValidationError,
)
from xresource.factory import ResourceFactory
from xresource.prototype import ResourceMetadata, XObjPrototype
from xresource.resource import State, XResource

if TYPE_CHECKING:
    from xresource.backends.databases._base import DatabaseResource
    from xresource.backends.files._base import FileResource
    from xresource.backends.network._base import NetworkResource
    from xresource.backends.streams._base import EventStreamResource
    from xresource.registry.registry import Registry
    from xresource.settings import Settings

__version__ = "0.1.0"

# Names resolved on first attribute access, so the import stays light.
_LAZY = {
    "FileResource": "xresource.backends.files._base",
    "DatabaseResource": "xresource.backends.databases._base",
    "NetworkResource": "xresource.backends.network._base",
    "EventStreamResource": "xresource.backends.streams._base",
    "Registry": "xresource.registry.registry",
    "Settings": "xresource.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xresource' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DatabaseResource",
    "EventStreamResource",
    "FileResource",
    "ManifestError",
    "MissingDependencyError",
    "NetworkResource",
    "Problem",
    "Registry",
    "ResourceFactory",
    "ResourceMetadata",
    "Settings",
    "State",
    "UnknownResourceTypeError",
    "XObjPrototype",
    "XResource",
    "XResourceAuthenticationError",
    "XResourceConnectionError",
    "XResourceDataError",
    "XResourceError",
    "XResourceIntegrityError",
    "XResourceNotFoundError",
    "XResourcePermissionError",
    "XResourcePoolExhaustedError",
    "XResourceQueryError",
    "XResourceRequestError",
    "XResourceSecretError",
    "XResourceStateError",
    "XResourceSyntaxError",
    "XResourceTimeoutError",
    "XResourceUnsupportedError",
    "XResourceValidationError",
    "__version__",
]
