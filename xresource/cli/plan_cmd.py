"""``xresource plan PATH --against URL|DIR``: what deploying PATH would do, field by field.

GitOps users run it in a pull request against the running service (its
``/resources`` endpoint, which carries each resource's fields as written) or
against the base branch's checkout (a folder). The decision is the registry's
own reload diff (:mod:`xresource.registry.diff`); :mod:`xresource.cli.plan_view`
turns it into Terraform's view and :mod:`xresource.cli.plan_render` prints it.
Exit status (docs/cli.md): 0 success, 1 a file would be rejected or
``--against`` cannot be read, 2 usage; ``--detailed-exitcode`` adds 3 for
"changes present".
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
from xresource.cli.paths import existing_paths
from xresource.cli.plan_render import FORMATS, render
from xresource.cli.plan_view import PlanView, build_view
from xresource.manifests import LoadResult
from xresource.manifests.overlays import field_origins, load_layers
from xresource.printable import printable
from xresource.registry.diff import Desired, Diff, Version, diff, shown
from xresource.registry.reader import version_of
from xresource.resource import XResource
from xresource.settings import load_settings


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="dry run: what deploying PATH would do to what runs, field by field",
        description="Compare the manifests under PATH with what runs (a serve's /resources) or is "
        "deployed (a folder) and show what a reload would add, replace, update in place, remove "
        "or reject, with each changed field (secrets as their references). Exit status: 0 success "
        "(whatever the changes), 1 a file would be rejected or --against cannot be read, 2 usage; "
        "with --detailed-exitcode, 3 when there are changes.",
    )
    parser.add_argument("path", metavar="PATH", help="the manifests as they would be deployed")
    parser.add_argument(
        "--against",
        required=True,
        metavar="URL|DIR",
        help="a running `xresource serve` (http://host:port) or the folder currently deployed",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help=f"exit {CHANGES_PRESENT} when the plan changes anything and 0 when it changes nothing "
        "(terraform uses 2, which is the usage error here)",
    )
    parser.add_argument(
        "--origins",
        action="store_true",
        help="text: also show the file:line that writes each changed field",
    )
    add_overlay_option(parser)
    add_overlay_option(parser, dest="against_overlay", flag="--against-overlay")
    parser.set_defaults(run=run)


CHANGES_PRESENT = 3
"""Exit status of ``--detailed-exitcode`` when something would change (2 is a usage error)."""


@dataclass
class Plan:
    """What a reload from the deployed state to PATH would do: the registry's own diff."""

    diff: Diff
    running_paths: dict[str, str | None] = field(default_factory=dict)
    running_fields: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Each running resource's fields as written and shown safely (None: not reported)."""
    new_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, int | None] = field(default_factory=dict)
    """The line of each resource's document in its file under PATH."""
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    """name -> field -> the ``file:line`` that writes it in PATH (with its overlays)."""

    def view(self) -> PlanView:
        return build_view(
            self.diff,
            new_fields=self.new_fields,
            old_fields=self.running_fields,
            old_paths=self.running_paths,
            lines=self.lines,
            origins=self.origins,
        )


class AgainstError(Exception):
    """``--against`` names a server that cannot be read or does not answer as ``xresource serve``."""


def current_state(against: str, settings: Any, overlays: Sequence[Path] = ()) -> dict[str, Version]:
    """name -> the version that runs (a serve's ``/resources``) or is deployed (a folder)."""
    if against.startswith(("http://", "https://")):
        return _served_state(against.rstrip("/") + "/resources")
    (folder,) = existing_paths([against])
    return _versions(load_layers([folder], overlays, settings), folder)


def _served_state(url: str) -> dict[str, Version]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator-given URL
            data = json.load(response)
        rows = data["resources"]
        versions = {
            str(r["name"]): Version(
                name=str(r["name"]),
                type=str(r["type"]),
                path=r.get("path"),
                manifest_hash=r.get("manifest_hash"),
                fields=_fields_of(r),
            )
            for r in rows
        }
    except (OSError, ValueError) as exc:
        raise AgainstError(f"cannot read {url}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise AgainstError(f"{url} does not answer as `xresource serve` does (no resource list)") from exc
    return versions


def _fields_of(row: dict[str, Any]) -> dict[str, Any] | None:
    fields = row.get("fields")
    return fields if isinstance(fields, dict) and fields else None  # an older server: hashes only


def _versions(loaded: LoadResult, root: Path, *, shown_only: bool = False) -> dict[str, Version]:
    """Versions whose folder is relative to ``root``, so two checkouts compare equal."""
    versions = {}
    for name, resource in loaded.resources.items():
        fields = loaded.fields.get(name, {})
        if shown_only:  # compared with a server's fields, which it shows safely
            fields = {key: shown(value, key) for key, value in fields.items()}
        versions[name] = version_of(resource, fields, folder=_relative_folder(resource, root))
    return versions


def make_plan(
    path: Path,
    current: dict[str, Version],
    settings: Any,
    overlays: Sequence[Path] = (),
    *,
    served: bool = False,
) -> Plan:
    """What the registry would do on a reload from ``current`` to the manifests under ``path``.

    It is the registry's own diff: a file with any problem changes nothing that runs,
    so nothing it defines is added or replaced, and what runs from it is not removed.
    Validation reads no secret, so a rotated secret file is not part of a plan.
    ``served``: ``current`` comes from a server, whose fields are already shown safely.
    """
    loaded = load_layers([path], overlays, settings)
    files = {_relative(f, path): str(f) for f in loaded.files}
    running = {name: replace(v, path=_head_file(v.path, files)) for name, v in current.items()}
    versions = _versions(loaded, path, shown_only=served)
    desired = Desired(
        versions=versions,
        problems=loaded.problems,
        names_by_file={str(f): names for f, names in loaded.names_by_file.items()},
    )
    return Plan(
        diff(running, desired),
        running_paths={name: v.path for name, v in current.items()},
        running_fields={
            name: dict(v.fields) if v.fields is not None else None for name, v in current.items()
        },
        new_fields={name: dict(v.fields or {}) for name, v in versions.items()},
        lines={name: r.manifest_line for name, r in loaded.resources.items()},
        origins={name: field_origins(loaded, name) for name in loaded.resources},
    )


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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings)
    (path,) = existing_paths([args.path])
    overlays, against_overlays = existing_paths(args.overlay), existing_paths(args.against_overlay)
    try:
        current = current_state(args.against, settings, against_overlays)
    except AgainstError as exc:
        print(f"xresource plan: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    served = args.against.startswith(("http://", "https://"))
    view = make_plan(path, current, settings, overlays, served=served).view()
    print(render(args.format, view, origins=args.origins))
    if view.problems:
        return 1
    return CHANGES_PRESENT if args.detailed_exitcode and view.summary.changes else 0
