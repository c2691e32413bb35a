"""Import optional drivers on first use, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from xresource.errors import MissingDependencyError


def require(module: str, extra: str, *, type_name: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``xresource[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        if missing != module and not module.startswith(f"{missing}.") and not missing.startswith(module):
            raise  # the driver is there but broken: show the real problem
        raise MissingDependencyError(module, extra, type_name) from None
