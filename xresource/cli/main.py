"""Entry point: parse arguments, run one command, turn errors into one clear line.

Exit status: 0 success, 1 the command found problems, 2 usage error; ``plan
--detailed-exitcode`` adds 3 for "changes present" (docs/cli.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from xresource.cli.paths import UsageError
from xresource.errors import XResourceError

Command = Callable[[argparse.Namespace], int]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that sub-command's (a faster start-up)."""
    from xresource.cli import commands

    parser = argparse.ArgumentParser(
        prog="xresource", description="Declarative resource registry: validate, inspect and serve manifests."
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--settings", help="settings.toml (default: $XRESOURCE_SETTINGS_FILE)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command is None:
        commands.register_all(sub)
    else:
        commands.register_only(sub, command)
    return parser


def _version() -> str:
    from xresource import __version__

    return f"xresource {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    from xresource.cli.commands import command_in

    tokens = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_in(tokens))
    args = parser.parse_args(tokens)
    run: Command = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"xresource {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`xresource plan ... | head`): nothing left to say, and Python's
        # own flush at exit must not fail again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
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
