"""``xresource ls PATH``: what the manifests define, without connecting."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from xresource.cli.paths import existing_paths
from xresource.cli.table import render_table
from xresource.manifests import load_manifests
from xresource.settings import load_settings


def register(sub: Any) -> None:
    parser = sub.add_parser("ls", help="list the resources defined under PATH")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = load_manifests(existing_paths(args.paths), load_settings(args.settings))
    rows = [
        {
            "name": r.name,
            "type": r.type,
            "target": r.target(),
            "tags": list(r.tags),
            "connect": r.connect_mode,
            "path": str(r.manifest_path),
        }
        for r in sorted(result.resources.values(), key=lambda r: r.name)
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(
            render_table(
                ["NAME", "TYPE", "TARGET", "TAGS"],
                [[r["name"], r["type"], r["target"], ",".join(r["tags"])] for r in rows],
            )
        )
    for problem in result.problems:
        print(problem, file=sys.stderr)
    return 1 if result.problems else 0
