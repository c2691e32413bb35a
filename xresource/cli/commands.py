"""Sub-command table: each command's module, imported only when that command runs.

A command line names one command, so only its module (and what it imports) is
loaded; ``xresource --help`` and the docs load them all. This keeps a
pre-commit run of ``validate`` from importing the server, the registry and the
schema generator it does not use.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

# In the order ``xresource --help`` lists them.
COMMANDS: dict[str, str] = {
    "validate": "validate_cmd",
    "schema": "schema_cmd",
    "ls": "inspect_cmd",
    "check": "check_cmd",
    "serve": "serve_cmd",
    "plan": "plan_cmd",
    "init": "init_cmd",
    "stubs": "stubs_cmd",
}

# Options of the top-level parser that take a value (so the value is not a command name).
_OPTIONS_WITH_VALUE = {"--settings"}


def register_all(sub: Any) -> None:
    for module in COMMANDS.values():
        importlib.import_module(f"xresource.cli.{module}").register(sub)


def register_only(sub: Any, command: str) -> None:
    importlib.import_module(f"xresource.cli.{COMMANDS[command]}").register(sub)


def command_in(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names, or None (help, a typo, nothing): then every command is needed."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None
