"""``xresource validate PATH...``: every problem at once, located."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xresource.cli.report import FORMATS, render
from xresource.manifests import load_manifests
from xresource.manifests.declared import check_declared_schemas
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    result = load_manifests([Path(p) for p in args.paths], settings)
    problems = list(result.problems)
    if not args.no_declared_schema:
        problems.extend(check_declared_schemas(result, settings))
    problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0))
    output = render(args.format, result.files, len(result.resources), problems)
    stream = sys.stdout
    print(output, file=stream)
    return 1 if problems else 0
