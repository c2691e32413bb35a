"""``xresource plan PATH --against URL|DIR``: what a change would add, replace, remove, reject.

GitOps users run it in a pull request against the running service (its
``/resources`` endpoint) or against the base branch's checkout (a folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xresource.cli.layers import add_overlay_option
from xresource.errors import Problem
from xresource.manifests import LoadResult
from xresource.manifests.overlays import field_origins, load_layers
from xresource.registry.diff import ChangeKind, Desired, Diff, Version, diff, problem_dict
from xresource.registry.reader import version_of
from xresource.resource import XResource
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
    parser.add_argument(
        "--origins",
        action="store_true",
        help="text: also show each changed field and the file:line that writes it",
    )
    add_overlay_option(parser)
    add_overlay_option(parser, dest="against_overlay", flag="--against-overlay")
    parser.set_defaults(run=run)


@dataclass
class Plan:
    """What a reload from the deployed state to PATH would do: the registry's own diff."""

    diff: Diff
    running_paths: dict[str, str | None] = field(default_factory=dict)
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    """name -> field -> the ``file:line`` that wrote it in PATH (with its overlays)."""

    @property
    def added(self) -> list[dict[str, Any]]:
        return self._rows("added")

    @property
    def replaced(self) -> list[dict[str, Any]]:
        return self._rows("replaced")

    @property
    def updated(self) -> list[dict[str, Any]]:
        return self._rows("updated")

    @property
    def removed(self) -> list[dict[str, Any]]:
        return self._rows("removed")

    @property
    def unchanged(self) -> list[str]:
        # A running resource whose new file is broken keeps running as it is.
        return sorted(self.diff.names("unchanged") + self.diff.names("rejected"))

    @property
    def rejected(self) -> list[Problem]:
        return self.diff.problems

    def _rows(self, kind: ChangeKind) -> list[dict[str, Any]]:
        rows = []
        for change in self.diff.of_kind(kind):
            row = change.as_dict()
            if kind == "removed":
                row["path"] = self.running_paths.get(change.name, change.path)
            else:
                origins = self.origins.get(change.name, {})
                changed = [f.field for f in change.fields] if kind != "added" else list(origins)
                row["origins"] = {k: v for k, v in origins.items() if k.partition(".")[0] in changed}
            rows.append(row)
        return rows

    def as_dict(self) -> dict[str, Any]:
        """The JSON output: rows of the diff's shape (see ``xresource.registry.diff``)."""
        return {
            "added": self.added,
            "replaced": self.replaced,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "rejected": [str(p) for p in self.rejected],
            "problems": [problem_dict(p) for p in self.rejected],
        }


def current_state(against: str, settings: Any, overlays: Sequence[Path] = ()) -> dict[str, Version]:
    """name -> the version that runs (a serve's ``/resources``) or is deployed (a folder)."""
    if against.startswith(("http://", "https://")):
        url = against.rstrip("/") + "/resources"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator-given URL
            data = json.load(response)
        return {
            r["name"]: Version(
                name=r["name"],
                type=r["type"],
                path=r.get("path"),
                manifest_hash=r.get("manifest_hash"),
                fields=r.get("fields") or None,  # a server before fields were shown: hashes only
            )
            for r in data["resources"]
        }
    return _versions(load_layers([Path(against)], overlays, settings), Path(against))


def _versions(loaded: LoadResult, root: Path) -> dict[str, Version]:
    """Versions whose folder is relative to ``root``, so two checkouts compare equal."""
    return {
        name: version_of(resource, loaded.fields.get(name, {}), folder=_relative_folder(resource, root))
        for name, resource in loaded.resources.items()
    }


def make_plan(path: Path, current: dict[str, Version], settings: Any, overlays: Sequence[Path] = ()) -> Plan:
    """What the registry would do on a reload from ``current`` to the manifests under ``path``.

    It is the registry's own diff: a file with any problem changes nothing that runs,
    so nothing it defines is added or replaced, and what runs from it is not removed.
    Validation reads no secret, so a rotated secret file is not part of a plan.
    """
    loaded = load_layers([path], overlays, settings)
    files = {_relative(f, path): str(f) for f in loaded.files}
    running = {name: replace(v, path=_head_file(v.path, files)) for name, v in current.items()}
    desired = Desired(
        versions=_versions(loaded, path),
        problems=loaded.problems,
        names_by_file={str(f): names for f, names in loaded.names_by_file.items()},
    )
    origins = {name: field_origins(loaded, name) for name in loaded.resources}
    return Plan(diff(running, desired), {name: v.path for name, v in current.items()}, origins)


def _relative_folder(resource: XResource, root: Path) -> str | None:
    relative = _relative(resource.manifest_path, root)
    return str(Path(relative).parent) if relative is not None else None


def _relative(file: Path | None, root: Path) -> str | None:
    if file is None:
        return None
    base = root if root.is_dir() else root.parent
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.name


def _head_file(running: str | None, head_files: dict[str | None, str]) -> str | None:
    """The file in PATH that a running resource's manifest corresponds to, if any.

    A deployed folder gives paths in its own checkout, a running server absolute paths in
    its own: the file in PATH with the longest matching tail of path parts is the same file.
    """
    if running is None:
        return None
    parts = Path(running).parts
    best: tuple[int, str | None] = (0, running)
    for relative, file in head_files.items():
        if relative is None:
            continue
        tail = Path(relative).parts
        if len(tail) > best[0] and parts[-len(tail) :] == tail:
            best = (len(tail), file)
    return best[1]


def render_text(plan: Plan, *, origins: bool = False) -> str:
    lines = [f"+ add      {r['name']} ({r['type']})  {r['path']}" for r in plan.added]
    for r in plan.replaced:
        lines += [f"~ replace  {r['name']} ({r['type']})  {r['path']}", *(_field_lines(r) if origins else [])]
    for r in plan.updated:
        lines += [f"* update   {r['name']} ({r['type']})  {r['path']}", *(_field_lines(r) if origins else [])]
    lines += [f"- remove   {r['name']} ({r['type']})" for r in plan.removed]
    lines += [f"! reject   {p}" for p in plan.rejected]
    update = f"{len(plan.updated)} to update in place, " if plan.updated else ""
    lines.append(
        f"plan: {len(plan.added)} to add, {len(plan.replaced)} to replace, {update}"
        f"{len(plan.removed)} to remove, {len(plan.unchanged)} unchanged, {len(plan.rejected)} problem(s)"
    )
    return "\n".join(lines)


def _field_lines(row: dict[str, Any]) -> list[str]:
    """``    field: old -> new  (file:line)`` for each changed field, with where PATH writes it."""
    origins = row.get("origins", {})
    lines = []
    for change in row["fields"]:
        name = change["field"]
        found = [
            v if k == name else f"{k.partition('.')[2]}: {v}"
            for k, v in origins.items()
            if k.partition(".")[0] == name
        ]
        where = f"  ({'; '.join(found)})" if found else ""
        old, new = (json.dumps(change[k], default=str)[:80] for k in ("old", "new"))
        lines.append(f"    {change['field']}: {old} -> {new}{where}")
    return lines


def render_markdown(plan: Plan) -> str:
    lines = ["### xresource plan", "", "| change | name | type | manifest |", "|---|---|---|---|"]
    lines += [f"| add | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.added]
    lines += [f"| replace | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.replaced]
    lines += [f"| update in place | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.updated]
    lines += [f"| remove | `{r['name']}` | {r['type']} | {r['path']} |" for r in plan.removed]
    if plan.rejected:
        lines += ["", "**Rejected** (these files change nothing until fixed):", ""]
        lines += [f"- `{p}`" for p in plan.rejected]
    lines += ["", f"{len(plan.unchanged)} unchanged."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    try:
        current = current_state(args.against, settings, [Path(p) for p in args.against_overlay])
    except OSError as exc:
        print(f"xresource: error: cannot read {args.against}: {exc}", file=sys.stderr)
        return 1
    plan = make_plan(Path(args.path), current, settings, [Path(p) for p in args.overlay])
    if args.format == "json":
        print(json.dumps(plan.as_dict(), indent=2))
    elif args.format == "markdown":
        print(render_markdown(plan))
    else:
        print(render_text(plan, origins=args.origins))
    return 1 if plan.rejected else 0
