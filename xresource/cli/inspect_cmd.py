"""``xresource ls PATH``: what the manifests define, without connecting.

With ``--overlay`` (docs/environments.md) the resources are the base's with the overlays
applied; ``--origins`` shows each field's value as written and the file and line it came
from (the JSON output always has ``origins``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from xresource.cli.layers import add_overlay_option, load
from xresource.cli.table import render_table
from xresource.manifests import LoadResult
from xresource.manifests.overlays import field_origins
from xresource.printable import printable
from xresource.settings import load_settings

_VALUE_WIDTH = 60


def register(sub: Any) -> None:
    parser = sub.add_parser("ls", help="list the resources defined under PATH")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--origins",
        action="store_true",
        help="also show every field: its value and the file:line it came from",
    )
    add_overlay_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = load(args, load_settings(args.settings))
    rows: list[dict[str, Any]] = [
        {
            "name": r.name,
            "type": r.type,
            "target": r.target(),
            "tags": list(r.tags),
            "connect": r.connect_mode,
            "path": str(r.manifest_path),
            "origins": field_origins(result, r.name),
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
        if args.origins:
            for row in rows:
                print(f"\n{row['name']} ({row['type']})")
                print(_origins_table(result, row["name"], row["origins"]))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    return 1 if result.problems else 0


def _origins_table(result: LoadResult, name: str, origins: dict[str, str]) -> str:
    from xresource.registry.diff import shown  # values as they may be printed: secrets masked

    fields = result.fields.get(name, {})
    lines = []
    for field, origin in origins.items():
        top, _, sub = field.partition(".")
        value = fields.get(top)
        if sub and isinstance(value, dict):
            value = value.get(sub)
        text = json.dumps(shown(value, sub or top), default=str, ensure_ascii=False)
        if len(text) > _VALUE_WIDTH:
            text = text[: _VALUE_WIDTH - 3] + "..."
        lines.append([printable(field), printable(text), printable(origin)])
    return render_table(["FIELD", "VALUE", "FROM"], lines)
