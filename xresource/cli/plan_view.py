"""What ``xresource plan`` shows, per resource, before any output format is chosen.

A :class:`~xresource.cli.plan_cmd.Plan` holds the registry's diff; this module
turns it into :class:`ResourceView` rows, Terraform's view of a change: one
header per resource (``+ add``, ``-/+ replace``, ``~ update in place``,
``- remove``, ``! rejected``) and one line per changed field, old -> new.

Values are the manifest's as written and already made safe by the diff
(:func:`xresource.registry.diff.shown`): a secret appears as its reference, a
literal credential as ``***``; nothing here reads or resolves a secret. The
renderers still escape every string, because names, keys, values and file
names come from untrusted manifests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from xresource.errors import Problem
from xresource.registry.diff import FOLDER_FIELD, Change, ChangeKind, Diff, FieldChange, shown

Action = Literal["add", "replace", "update", "remove", "rejected"]

SYMBOLS: dict[Action, str] = {"add": "+", "replace": "-/+", "update": "~", "remove": "-", "rejected": "!"}
WORDS: dict[Action, str] = {
    "add": "add",
    "replace": "replace",
    "update": "update in place",
    "remove": "remove",
    "rejected": "rejected",
}
ORDER: tuple[Action, ...] = ("add", "replace", "update", "remove", "rejected")
_KINDS: dict[Action, ChangeKind] = {
    "add": "added",
    "replace": "replaced",
    "update": "updated",
    "remove": "removed",
    "rejected": "rejected",
}
SKIPPED_ON_ADD = frozenset({"name", "type"})
"""Fields an added or removed resource's header already shows."""

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class FieldLine:
    """One line under a resource: a field set (``+``), unset (``-``), changed (``~``), or a note."""

    sign: Literal["+", "-", "~", "#"]
    name: str
    old: Any = None
    new: Any = None
    live: bool = False
    """The field may change without a reconnect (the registry updates it in place)."""
    origin: str | None = None
    """The ``file:line`` under PATH (or an overlay) that writes the new value."""
    note: str | None = None
    """For ``#`` lines: a sentence instead of values (a rotated secret file, unknown fields)."""


@dataclass(frozen=True, slots=True)
class ResourceView:
    """One resource in the plan and what would happen to it."""

    action: Action
    name: str
    type: str | None
    path: str | None
    line: int | None
    fields: tuple[FieldLine, ...] = ()
    errors: tuple[str, ...] = ()
    """For ``rejected``: the problems of its file (``file:line:col: ...``); it keeps running as is."""
    origins: Mapping[str, str] = field(default_factory=dict)
    """Changed field (or ``field.key`` an overlay set) -> the ``file:line`` that writes it."""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]

    @property
    def words(self) -> str:
        return WORDS[self.action]

    @property
    def reconnects(self) -> bool:
        return self.action == "replace"


@dataclass(frozen=True, slots=True)
class Summary:
    add: int
    replace: int
    update: int
    remove: int
    unchanged: int
    problems: int

    @property
    def changes(self) -> int:
        return self.add + self.replace + self.update + self.remove

    def sentence(self) -> str:
        update = f"{self.update} to update in place, " if self.update else ""
        return (
            f"plan: {self.add} to add, {self.replace} to replace, {update}{self.remove} to remove, "
            f"{self.unchanged} unchanged, {self.problems} problem(s)"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "add": self.add,
            "replace": self.replace,
            "update": self.update,
            "remove": self.remove,
            "unchanged": self.unchanged,
            "problems": self.problems,
        }


@dataclass(slots=True)
class PlanView:
    """Everything a renderer needs: the resources in order, the problems, the counts."""

    resources: list[ResourceView] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Names that keep running as they are (also those whose new file is rejected)."""
    summary: Summary = field(default_factory=lambda: Summary(0, 0, 0, 0, 0, 0))

    def of(self, action: Action) -> list[ResourceView]:
        return [r for r in self.resources if r.action == action]


def build_view(
    diff: Diff,
    *,
    new_fields: Mapping[str, Mapping[str, Any]],
    old_fields: Mapping[str, Mapping[str, Any] | None],
    old_paths: Mapping[str, str | None],
    lines: Mapping[str, int | None],
    origins: Mapping[str, Mapping[str, str]] | None = None,
) -> PlanView:
    """The view of ``diff``; ``new_fields``/``old_fields`` list what an added/removed resource sets.

    ``origins``: name -> field -> the ``file:line`` that writes it (overlays included).
    """
    view = PlanView(problems=list(diff.problems))
    for action in ORDER:
        for change in diff.of_kind(_KINDS[action]):
            written = (origins or {}).get(change.name, {})
            resource = _resource(change, action, new_fields, old_fields, old_paths, lines)
            view.resources.append(_with_origins(resource, written))
    view.unchanged = sorted(diff.names("unchanged") + diff.names("rejected"))
    view.summary = Summary(
        add=len(view.of("add")),
        replace=len(view.of("replace")),
        update=len(view.of("update")),
        remove=len(view.of("remove")),
        unchanged=len(view.unchanged),
        problems=len(view.problems),
    )
    return view


def _resource(
    change: Change,
    action: Action,
    new_fields: Mapping[str, Mapping[str, Any]],
    old_fields: Mapping[str, Mapping[str, Any] | None],
    old_paths: Mapping[str, str | None],
    lines: Mapping[str, int | None],
) -> ResourceView:
    name = change.name
    if action == "add":
        fields = tuple(_whole("+", new_fields.get(name)))
    elif action == "remove":
        known = old_fields.get(name)
        fields = tuple(_whole("-", known)) if known is not None else ()
    elif action in ("replace", "update"):
        fields = tuple(_changed(change))
    else:
        fields = ()
    path = old_paths.get(name, change.path) if action == "remove" else change.path
    line = None if action == "remove" else lines.get(name)
    return ResourceView(action, name, change.type, path, line, fields, change.errors)


def _with_origins(resource: ResourceView, written: Mapping[str, str]) -> ResourceView:
    """``resource`` with the ``file:line`` of each field it changes (none for a removal)."""
    if not written or resource.action in ("remove", "rejected"):
        return resource
    changed = {item.name.partition(".")[0].partition("[")[0] for item in resource.fields}
    fields = tuple(
        replace(item, origin=written.get(item.name) or written.get(_top(item.name)))
        if item.sign != "-"  # nothing is written any more: no place to point at
        else item
        for item in resource.fields
    )
    kept = {key: where for key, where in written.items() if key.partition(".")[0] in changed}
    return replace(resource, fields=fields, origins=kept)


def _top(name: str) -> str:
    return name.partition(".")[0].partition("[")[0]


def _whole(sign: Literal["+", "-"], fields: Mapping[str, Any] | None) -> Iterable[FieldLine]:
    for key in sorted(fields or {}):
        if key in SKIPPED_ON_ADD or fields is None or fields[key] is None:
            continue
        value = shown(fields[key], key)
        yield FieldLine(sign, key, new=value) if sign == "+" else FieldLine(sign, key, old=value)


def _changed(change: Change) -> Iterable[FieldLine]:
    for item in change.fields:
        yield from _field_lines(item)
    for reference in change.secrets_rotated:
        yield FieldLine("#", reference, note=f"secret file content changed: {reference}")
    if not change.fields and not change.secrets_rotated:
        # The hashes differ but the fields are not known (a server that does not report them)
        # or differ only where they are masked (a literal credential on both sides).
        yield FieldLine("#", "", note="fields changed that cannot be shown")


def _field_lines(item: FieldChange) -> Iterable[FieldLine]:
    name = "folder (relative paths resolve against)" if item.field == FOLDER_FIELD else item.field
    old, new = item.old, item.new
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        # Headers, options, auth_params: show the keys that changed, not two whole mappings.
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                subkey = f"{name}{_subkey(key)}"
                yield _line(subkey, old.get(key), new.get(key), key in old, key in new, item.live)
        return
    yield _line(name, old, new, old is not None, new is not None, item.live)


def _line(name: str, old: Any, new: Any, had: bool, has: bool, live: bool) -> FieldLine:
    if not had:
        return FieldLine("+", name, new=new, live=live)
    if not has:
        return FieldLine("-", name, old=old, live=live)
    if old == new:  # different as written, equal as shown: the difference is in a masked value
        return FieldLine("#", name, live=live, note=f"{name}: a value that is not shown changed")
    return FieldLine("~", name, old=old, new=new, live=live)


def _subkey(key: str) -> str:
    return f".{key}" if _PLAIN_KEY_RE.fullmatch(key) else f"[{json.dumps(key, ensure_ascii=False)}]"


def value_text(value: Any, limit: int | None) -> str:
    """A value as JSON (one line: newlines are escaped), cut to ``limit`` characters (None: whole)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


FORCES_REPLACE = "  # forces replace"
"""Marks, in a replace, a change the registry cannot apply to the running instance."""


def field_text(
    item: FieldLine, limit: int | None = 120, *, in_replace: bool = False, origins: bool = False
) -> str:
    """``name: old -> new`` (``~``), ``name: new`` (``+``), ``name: old`` (``-``), or the note.

    ``origins``: append where the new value is written, ``(file:line)``.
    """
    mark = FORCES_REPLACE if in_replace and not item.live else ""
    where = f"  ({item.origin})" if origins and item.origin else ""
    if item.note is not None:
        return item.note + where + mark
    if item.sign == "~":
        return f"{item.name}: {value_text(item.old, limit)} -> {value_text(item.new, limit)}{where}{mark}"
    return f"{item.name}: {value_text(item.new if item.sign == '+' else item.old, limit)}{where}{mark}"
