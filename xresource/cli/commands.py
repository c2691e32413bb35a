"""Sub-command table: each command's arguments and the function that runs it."""

from __future__ import annotations

import argparse
from typing import Any

from xresource.cli import inspect_cmd, schema_cmd, validate_cmd


def register_all(sub: Any) -> None:
    for module in (validate_cmd, schema_cmd, inspect_cmd):
        module.register(sub)
    _register_optional(sub)


def _register_optional(sub: Any) -> None:
    """Commands whose modules arrive with later features register if present."""
    import importlib

    for name in ("check_cmd", "serve_cmd", "plan_cmd", "init_cmd", "stubs_cmd"):
        try:
            module = importlib.import_module(f"xresource.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"xresource.cli.{name}":
                raise
            continue
        module.register(sub)


def add_paths(parser: argparse.ArgumentParser, help_text: str = "manifest files or folders") -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help=help_text)
