"""``--overlay DIR`` for every command that reads manifests (docs/environments.md)."""

from __future__ import annotations

import argparse
from typing import Any

from xresource.cli.paths import existing_paths
from xresource.manifests import LoadResult
from xresource.manifests.loader import ParseCache
from xresource.manifests.overlays import load_layers
from xresource.settings import Settings


def add_overlay_option(parser: Any, *, dest: str = "overlay", flag: str = "--overlay") -> None:
    parser.add_argument(
        flag,
        dest=dest,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of overlays applied on PATH field by field (repeatable: later ones win)",
    )


def load(
    args: argparse.Namespace, settings: Settings, *, parse_cache: ParseCache | None = None
) -> LoadResult:
    """The manifests under ``args.paths`` with ``args.overlay`` applied in order."""
    return load_layers(
        existing_paths(args.paths), existing_paths(args.overlay), settings, parse_cache=parse_cache
    )
