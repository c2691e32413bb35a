"""``xresource init PATH --type TYPE [--name NAME]``: write a manifest skeleton.

The skeleton declares its schema (the editor's modeline in YAML, a ``$schema``
key in TOML, both honoured by ``xresource validate``), fills the required
fields with valid example values, and lists every optional field commented out
with its default and description, so the file is valid as written and
documents itself.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

from xresource.cli.fields import FieldDoc, describe_fields, example_manifest, summary, yaml_line
from xresource.errors import UnknownResourceTypeError
from xresource.factory import BUILTIN_TYPES, ResourceFactory
from xresource.packaged_schemas import union_schema
from xresource.resource import NAME_PATTERN
from xresource.schema import SCHEMA_BASE_ID

SCHEMA_FILE = Path("schemas") / "resource.schema.json"
WIDTH = 100


def register(sub: Any) -> None:
    parser = sub.add_parser("init", help="write a manifest skeleton for a resource type")
    parser.add_argument("path", metavar="PATH", help="the manifest to create (.yaml, .yml or .toml)")
    parser.add_argument(
        "--type",
        required=True,
        dest="type_name",
        metavar="TYPE",
        help=f"the resource type: {', '.join(sorted(BUILTIN_TYPES))}, or a plugin's",
    )
    parser.add_argument("--name", help="the resource name (default: derived from the file name)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.suffix.lower() not in (".yaml", ".yml", ".toml"):
        return _usage(f"{path}: the file name must end in .yaml, .yml or .toml")
    try:
        ResourceFactory.entry(args.type_name)
    except UnknownResourceTypeError as exc:
        close = difflib.get_close_matches(args.type_name, exc.known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known types: {', '.join(exc.known)}"
        return _usage(f"unknown resource type {args.type_name!r}{hint}")
    name = args.name if args.name is not None else name_from_path(path)
    if name is None or not re.fullmatch(NAME_PATTERN, name):
        shown = name if name is not None else path.stem
        return _usage(
            f"{shown!r} is not a valid resource name ({NAME_PATTERN}: lower case, starts with a letter); "
            "pass --name"
        )
    text = render_skeleton(args.type_name, name, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "x" creates the file or fails if it exists, in one step: never overwrite a manifest.
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"xresource: error: {path} already exists; not overwriting it", file=sys.stderr)
        return 1
    print(f"wrote {path} ({args.type_name} resource {name!r}); check it with: xresource validate {path}")
    advice = schema_reference(path).advice
    if advice is not None:
        print(f"note: {advice}")
    return 0


def _usage(message: str) -> int:
    print(f"xresource init: error: {message}", file=sys.stderr)
    return 2


def name_from_path(path: Path) -> str | None:
    """``Orders DB.yaml`` -> ``orders_db``; None when nothing usable is left."""
    name = re.sub(r"[^a-z0-9_.-]+", "_", path.stem.lower()).strip("_.-")
    name = re.sub(r"^[^a-z]+", "", name)[:63]
    return name or None


def schema_reference(target: Path) -> SchemaReference:
    """Where ``target``'s modeline should point: a relative path to the nearest
    ``schemas/resource.schema.json`` above it (up to the repository root), else the schema
    shipped in the installed package, with the command that makes a shareable one."""
    folder = target.resolve().parent
    top = None
    for candidate in (folder, *folder.parents):
        found = candidate / SCHEMA_FILE
        if found.is_file():
            return SchemaReference(Path(_relpath(found, folder)).as_posix())
        if (candidate / ".git").exists():  # the repository root: schemas above it are not ours
            top = candidate
            break
    cwd = Path.cwd().resolve()
    # Where a shared schemas/ belongs: the repository root, else the working folder (the one
    # holding resources.d/, as in this project's own layout) when the manifest is below it.
    home = top or (cwd if cwd == folder or cwd in folder.parents else folder)
    advice = (
        f"the modeline points at the schema inside the installed package; to commit one that "
        f"works on every machine, run: xresource schema --out {_shown(home / 'schemas')} "
        f"and set the first line to: # yaml-language-server: $schema="
        f"{Path(_relpath(home / SCHEMA_FILE, folder)).as_posix()}"
    )
    shipped = union_schema()
    if shipped is not None:
        return SchemaReference(shipped.as_posix(), advice)
    return SchemaReference(
        f"{SCHEMA_BASE_ID}resource.schema.json", advice.replace("installed package", "web")
    )


class SchemaReference(NamedTuple):
    ref: str
    advice: str | None = None  # what to run for a modeline that resolves on every machine


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is below it (shorter, copy-pasteable)."""
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def render_skeleton(type_name: str, name: str, target: Path) -> str:
    """The text of a new manifest of ``type_name`` called ``name``, to be written at ``target``."""
    schema = schema_reference(target).ref
    manifest = example_manifest(type_name, name)
    # Deprecated spellings are accepted, but a new manifest should not learn them.
    optional = [f for f in describe_fields(type_name) if f.name not in manifest and not f.deprecated]
    toml = target.suffix.lower() == ".toml"
    lines = [f"# yaml-language-server: $schema={schema}"] if not toml else []
    lines += _comment(f"{type_name} resource: {summary(type_name)}")
    lines += _comment(
        "Written by `xresource init`: required fields hold example values to replace; "
        "optional fields are commented out with their defaults."
    )
    if toml:
        lines.append(f"{_toml_key('$schema')} = {_toml_value(schema)}")
    for field in describe_fields(type_name):
        if field.name in manifest:
            if field.name not in ("type", "name"):
                lines += _described(field)
            lines.append(_assignment(field.name, manifest[field.name], toml))
    if optional:
        lines += ["", "# ---- optional fields ----"]
    for field in optional:
        lines.append("")
        lines += _described(field)
        lines += _commented_default(field, toml)
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False)]


def _described(field: FieldDoc) -> list[str]:
    """The description, then the type in parentheses (on the last line when it fits)."""
    kind = f"({field.type_text})"
    lines = _comment(field.description) if field.description else []
    if lines and len(lines[-1]) + 1 + len(kind) <= WIDTH:
        lines[-1] += " " + kind
    else:
        lines.append(f"# {kind}")
    return lines


def _commented_default(field: FieldDoc, toml: bool) -> list[str]:
    if field.default is None:
        # Unset: YAML can say null; TOML has no null, so say it in words.
        return [f"# {field.name} = ...  (default: unset)"] if toml else [f"# {field.name}: null"]
    return ["# " + _assignment(field.name, field.default, toml)]


def _assignment(key: str, value: Any, toml: bool) -> str:
    if toml:
        return f"{_toml_key(key)} = {_toml_value(value)}"
    return yaml_line(key, value)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    """A TOML value (inline form); JSON string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value))
