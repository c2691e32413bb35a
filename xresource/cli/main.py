"""Entry point: parse arguments, run one command, turn errors into one clear line.

Exit status: 0 success, 1 the command found problems, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from xresource.errors import XResourceError

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from xresource.cli import commands

    parser = argparse.ArgumentParser(
        prog="xresource", description="Declarative resource registry: validate, inspect and serve manifests."
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--settings", help="settings.toml (default: $XRESOURCE_SETTINGS_FILE)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register_all(sub)
    return parser


def _version() -> str:
    from xresource import __version__

    return f"xresource {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except XResourceError as exc:
        print(f"xresource: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get("XRESOURCE_DEBUG"):
            raise
        print(
            f"xresource: internal error: {type(exc).__name__}: {exc} (set XRESOURCE_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
