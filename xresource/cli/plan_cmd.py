"""``xresource plan PATH --against URL|DIR``: what a change would add, replace, remove, reject.

GitOps users run it in a pull request against the running service (its
``/resources`` endpoint) or against the base branch's checkout (a folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xresource.errors import Problem
from xresource.manifests import load_manifests
from xresource.settings import load_settings


def register(sub: Any) -> None:
    parser = sub.add_parser("plan", help="dry run: what a change to PATH would do to what runs")
    parser.add_argument("path", metavar="PATH", help="the manifests as they would be deployed")
    parser.add_argument(
        "--against",
        required=True,
        metavar="URL|DIR",
        help="a running `xresource serve` (http://host:port) or the folder currently deployed",
    )
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    parser.set_defaults(run=run)


@dataclass
class Plan:
    added: list[dict[str, Any]] = field(default_factory=list)
    replaced: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "replaced": self.replaced,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "rejected": [str(p) for p in self.rejected],
        }


def current_state(against: str, settings: Any) -> dict[str, dict[str, Any]]:
    """name -> {type, manifest_hash, path} of what runs (or is deployed)."""
    if against.startswith(("http://", "https://")):
        url = against.rstrip("/") + "/resources"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator-given URL
            data = json.load(response)
        return {r["name"]: r for r in data["resources"]}
    root = Path(against)
    loaded = load_manifests(root, settings)
    return {
        name: {
            "name": name,
            "type": r.type,
            "manifest_hash": r.manifest_hash,
            "path": str(r.manifest_path),
            "relative_path": _relative(r.manifest_path, root),
        }
        for name, r in loaded.resources.items()
    }


def make_plan(path: Path, current: dict[str, dict[str, Any]], settings: Any) -> Plan:
    """What the registry would do on a reload from ``current`` to the manifests under ``path``.

    It follows the registry's rule: a file with any problem changes nothing that runs, so
    nothing it defines is added or replaced, and what runs from it is not removed.
    """
    loaded = load_manifests(path, settings)
    plan = Plan(rejected=list(loaded.problems))
    broken = {str(p.file) for p in loaded.problems}
    frozen = {n for f, names in loaded.names_by_file.items() if str(f) in broken for n in names}
    # A file that no longer parses names nothing; what runs from it is found by its path.
    broken_paths = [_relative(Path(f), path) for f in broken]
    for name, info in current.items():
        if _same_file(info, broken_paths):
            frozen.add(name)
    for name, resource in sorted(loaded.resources.items()):
        row = {"name": name, "type": resource.type, "path": str(resource.manifest_path)}
        if name in frozen:
            if name in current:
                plan.unchanged.append(name)  # the running version is kept
        elif name not in current:
            plan.added.append(row)
        elif current[name].get("manifest_hash") != resource.manifest_hash:
            plan.replaced.append(row)
        else:
            plan.unchanged.append(name)
    for name, info in sorted(current.items()):
        if name in frozen and name not in loaded.resources:
            plan.unchanged.append(name)
        elif name not in loaded.resources:
            plan.removed.append({"name": name, "type": info.get("type"), "path": info.get("path")})
    return plan


def _relative(file: Path | None, root: Path) -> str | None:
    if file is None:
        return None
    base = root if root.is_dir() else root.parent
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.name


def _same_file(info: dict[str, Any], broken: list[str | None]) -> bool:
    """Whether the running resource ``info`` comes from one of the ``broken`` files (relative paths)."""
    relative = info.get("relative_path")
    if relative is not None:  # a deployed folder: the exact relative path is known
        return relative in broken
    running = Path(str(info.get("path") or "")).parts
    # A running server reports absolute paths in its own checkout: match the trailing parts.
    for rel in broken:
        if rel is not None:
            parts = Path(rel).parts
            if running[-len(parts) :] == parts:
                return True
    return False


def render_text(plan: Plan) -> str:
    lines = [f"+ add      {r['name']} ({r['type']})  {r['path']}" for r in plan.added]
    lines += [f"~ replace  {r['name']} ({r['type']})  {r['path']}" for r in plan.replaced]
    lines += [f"- remove   {r['name']} ({r['type']})" for r in plan.removed]
    lines += [f"! reject   {p}" for p in plan.rejected]
    lines.append(
        f"plan: {len(plan.added)} to add, {len(plan.replaced)} to replace, {len(plan.removed)} to remove, "
        f"{len(plan.unchanged)} unchanged, {len(plan.rejected)} problem(s)"
    )
    return "\n".join(lines)


def render_markdown(plan: Plan) -> str:
    lines = ["### xresource plan", "", "| change | name | type | manifest |", "|---|---|---|---|"]
    lines += [f"| add | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.added]
    lines += [f"| replace | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.replaced]
    lines += [f"| remove | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.removed]
    if plan.rejected:
        lines += ["", "**Rejected** (these files change nothing until fixed):", ""]
        lines += [f"- `{p}`" for p in plan.rejected]
    lines += ["", f"{len(plan.unchanged)} unchanged."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    try:
        current = current_state(args.against, settings)
    except OSError as exc:
        print(f"xresource: error: cannot read {args.against}: {exc}", file=sys.stderr)
        return 1
    plan = make_plan(Path(args.path), current, settings)
    if args.format == "json":
        print(json.dumps(plan.as_dict(), indent=2))
    elif args.format == "markdown":
        print(render_markdown(plan))
    else:
        print(render_text(plan))
    return 1 if plan.rejected else 0
