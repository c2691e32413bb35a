"""``xresource validate PATH...``: every problem at once, located."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from xresource.cli.layers import add_overlay_option, load
from xresource.cli.report import FORMATS, render
from xresource.manifests.declared import check_declared_schemas
from xresource.manifests.loader import ParseCache
from xresource.settings import load_settings


def register(sub: Any) -> None:
    parser = sub.add_parser("validate", help="validate manifests (exit 0 valid, 1 invalid, 2 usage)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or folders")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument(
        "--no-declared-schema",
        action="store_true",
        help="ignore $schema modelines / keys (validate with the built-in models only)",
    )
    parser.add_argument(
        "--preflight",
        action="store_true",
        help="also check that every ${env:...} is set and every ${file:...} is a readable regular file "
        "within the allowed roots and size cap, here and now (no value is read or shown)",
    )
    add_overlay_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Pydantic looks for plugins (observers of validation, such as tracing) by scanning every
    # installed distribution's entry points on its first validator: about a tenth of a cold
    # run in a large environment, for nothing a manifest check needs. Set the variable to an
    # empty string to keep them.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    settings = load_settings(args.settings)
    parsed: ParseCache = {}  # every document read, valid or not, for the preflight
    result = load(args, settings, parse_cache=parsed)
    problems = list(result.problems)
    if not args.no_declared_schema:
        problems.extend(check_declared_schemas(result, settings))
    if args.preflight:
        from xresource.manifests.preflight import preflight

        # Loading already reports what it can see without reading (a FIFO, a folder): once.
        seen = {(p.file, p.line, p.field) for p in problems}
        problems.extend(
            p
            for p in preflight([doc for docs, _ in parsed.values() for doc in docs], settings)
            if (p.file, p.line, p.field) not in seen
        )
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    output = render(args.format, result.files, len(result.resources), problems)
    stream = sys.stdout
    print(output, file=stream)
    return 1 if problems else 0
