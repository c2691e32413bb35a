"""``xresource schema --out DIR`` / ``--check DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xresource.schema import stale_schemas, write_schemas


def register(sub: Any) -> None:
    parser = sub.add_parser("schema", help="write or check the JSON Schemas generated from the models")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--out", metavar="DIR", help="write DIR/<type>.schema.json and DIR/resource.schema.json"
    )
    group.add_argument("--check", metavar="DIR", help="exit 1 when the schemas in DIR are missing or stale")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.out:
        written = write_schemas(Path(args.out))
        print(f"wrote {len(written)} schemas to {args.out}")
        return 0
    stale = stale_schemas(Path(args.check))
    if stale:
        for name in stale:
            print(
                f"{Path(args.check) / name}: stale or missing; run: xresource schema --out {args.check}",
                file=sys.stderr,
            )
        return 1
    print(f"schemas in {args.check} are current")
    return 0
