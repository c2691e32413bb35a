"""``xresource check PATH``: connect to each resource and report health and latency."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from xresource.cli.layers import add_overlay_option, load
from xresource.cli.table import render_table
from xresource.errors import XResourceError
from xresource.resource import XResource
from xresource.settings import load_settings


def register(sub: Any) -> None:
    parser = sub.add_parser("check", help="connect to each resource; exit 1 if any is unhealthy")
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per resource (default: settings)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    add_overlay_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    result = load(args, settings)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    timeout = args.timeout or settings.registry.connect_timeout
    rows = asyncio.run(_check_all(list(result.resources.values()), timeout))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(
            render_table(
                ["NAME", "TYPE", "STATE", "LATENCY", "ERROR"],
                [
                    [r["name"], r["type"], r["state"], f"{r['latency_ms']:.1f} ms", r["error"] or ""]
                    for r in rows
                ],
            )
        )
    unhealthy = [r for r in rows if r["state"] != "healthy"]
    return 1 if unhealthy or result.problems else 0


async def _check_all(resources: list[XResource], timeout: float) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(_check(r, timeout) for r in sorted(resources, key=lambda r: r.name))))


async def _check(resource: XResource, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(resource.connect(), timeout)
        healthy = await asyncio.wait_for(resource.validate_connection(), timeout)
        if not healthy:
            error = resource.last_error or "health check failed"
    except TimeoutError:
        error = f"no answer within {timeout:g}s"
    except XResourceError as exc:
        error = str(exc)
    latency = (time.perf_counter() - started) * 1000
    with contextlib.suppress(TimeoutError, XResourceError):
        await asyncio.wait_for(resource.disconnect(), timeout)
    return {
        "name": resource.name,
        "type": resource.type,
        "target": resource.target(),
        "state": "healthy" if error is None else "unhealthy",
        "latency_ms": round(latency, 2),
        "error": error,
    }
