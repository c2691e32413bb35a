"""The output formats of ``xresource plan``: text, json, github and markdown.

Every format shows the same :class:`~xresource.cli.plan_view.PlanView`. Values
are as written (secrets as references, literal credentials as ``***``); every
string from a manifest is escaped for the format it lands in: text and github
lines through :func:`~xresource.printable.printable` (one line stays one line,
so no ``::error`` can be smuggled in), markdown through
:mod:`xresource.cli.markdown` (code spans and fences only), JSON by itself.
"""

from __future__ import annotations

import json
from typing import Any

from xresource.cli.markdown import code, fenced
from xresource.cli.plan_view import (
    FORCES_REPLACE,
    Action,
    FieldLine,
    PlanView,
    ResourceView,
    field_text,
    value_text,
)
from xresource.cli.report import escape_annotation_data, escape_annotation_property
from xresource.errors import Problem
from xresource.printable import printable
from xresource.registry.diff import problem_dict

FORMATS = ("text", "json", "github", "markdown")
VALUE_LIMIT = 200
"""Characters of one value in text and markdown output (JSON has them whole)."""
MARKDOWN_BUDGET = 60_000
"""A pull-request comment holds at most 65,536 characters: details past this are left out."""
_KEEPS_RUNNING = "keeps running as deployed until its file is fixed"


def render(fmt: str, view: PlanView, *, origins: bool = False) -> str:
    """``view`` in ``fmt``; ``origins``: the text also says which file:line writes each field."""
    if fmt == "json":
        return render_json(view)
    if fmt == "github":
        return render_github(view)
    if fmt == "markdown":
        return render_markdown(view)
    return render_text(view, origins=origins)


# ---- text ---------------------------------------------------------------------------------------


def _header(resource: ResourceView) -> str:
    what = f"{resource.name} ({resource.type})"
    where = _KEEPS_RUNNING if resource.action == "rejected" else (resource.path or "")
    return f"{resource.symbol:<3} {resource.words:<15}  {what}  {where}".rstrip()


def render_text(view: PlanView, *, origins: bool = False) -> str:
    lines: list[str] = []
    for resource in view.resources:
        lines.append(_header(resource))
        replace = resource.action == "replace"
        lines += [
            f"      {item.sign} {field_text(item, VALUE_LIMIT, in_replace=replace, origins=origins)}"
            for item in resource.fields
        ]
        lines += [f"      {error}" for error in resource.errors]
    for problem in _unattached(view):
        lines.append(f"!   rejected         {problem}")
    lines.append(view.summary.sentence())
    return "\n".join(printable(line) for line in lines)


def _unattached(view: PlanView) -> list[Problem]:
    """Problems not already listed under a running resource they keep as it is."""
    shown = {error for r in view.resources for error in r.errors}
    return [p for p in view.problems if str(p) not in shown]


# ---- json ---------------------------------------------------------------------------------------


def render_json(view: PlanView) -> str:
    return json.dumps(plan_dict(view), indent=2, ensure_ascii=False)


def plan_dict(view: PlanView) -> dict[str, Any]:
    """The JSON report (shape in docs/cli.md): the diff's shape plus fields and counts."""
    data: dict[str, Any] = {
        "changes_present": view.summary.changes > 0,
        "summary": view.summary.as_dict(),
    }
    keys: dict[Action, str] = {
        "add": "added",
        "replace": "replaced",
        "update": "updated",
        "remove": "removed",
    }
    for action, key in keys.items():
        data[key] = [_resource_dict(r) for r in view.of(action)]
    data["rejected"] = [_resource_dict(r) for r in view.of("rejected")]
    data["unchanged"] = view.unchanged
    data["problems"] = [problem_dict(p) for p in view.problems]
    return data


def _resource_dict(resource: ResourceView) -> dict[str, Any]:
    fields = [_field_dict(f) for f in resource.fields if f.note is None]
    return {
        "name": resource.name,
        "type": resource.type,
        "action": resource.action,
        "path": resource.path,
        "line": resource.line,
        "fields": fields,
        "notes": [f.note for f in resource.fields if f.note is not None],
        "errors": list(resource.errors),
        "origins": dict(resource.origins),
    }


def _field_dict(item: FieldLine) -> dict[str, Any]:
    return {"field": item.name, "old": item.old, "new": item.new, "live": item.live, "sign": item.sign}


# ---- github -------------------------------------------------------------------------------------


def render_github(view: PlanView) -> str:
    """Workflow commands: an error per problem, a notice per change on its manifest line, a summary."""
    lines = []
    for p in view.problems:
        props = [f"file={escape_annotation_property(p.file)}"]
        if p.line is not None:
            props.append(f"line={p.line}")
        if p.column is not None:
            props.append(f"col={p.column}")
        where = (f" {p.resource}" if p.resource else "") + (f".{p.field}" if p.field else "")
        props.append(f"title={escape_annotation_property('xresource plan: rejected' + where)}")
        lines.append(f"::error {','.join(props)}::{escape_annotation_data(p.message)}")
    for resource in view.resources:
        if resource.action == "rejected":
            continue  # its file's problems are the errors above
        props = []
        if resource.path is not None and resource.action != "remove":
            props.append(f"file={escape_annotation_property(resource.path)}")
            if resource.line is not None:
                props.append(f"line={resource.line}")
        title = f"xresource plan: {resource.symbol} {resource.words} {resource.name} ({resource.type})"
        props.append(f"title={escape_annotation_property(title)}")
        replace = resource.action == "replace"
        body = "\n".join(
            f"{f.sign} {field_text(f, VALUE_LIMIT, in_replace=replace)}" for f in resource.fields
        )
        body = body or resource.words
        lines.append(f"::notice {','.join(props)}::{escape_annotation_data(body)}")
    lines.append(view.summary.sentence())
    return "\n".join(lines)


# ---- markdown -----------------------------------------------------------------------------------


def render_markdown(view: PlanView) -> str:
    """A pull-request comment: the counts, a table of the changes, a details section per resource."""
    summary = view.summary
    lines = ["### xresource plan", "", f"**{summary.sentence().removeprefix('plan: ')}**", ""]
    if view.resources:
        lines += ["| | change | resource | type | manifest |", "|---|---|---|---|---|"]
        for r in view.resources:
            cells = [
                code(r.symbol, in_table=True),
                r.words,
                code(r.name, in_table=True),
                code(r.type or "?", in_table=True),
                code(r.path, in_table=True) if r.path else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    else:
        lines += ["No resource changes.", ""]
    left_out = 0
    for r in view.resources:
        section = _details(r)
        if sum(len(line) + 1 for line in lines + section) > MARKDOWN_BUDGET:
            left_out += 1
            continue
        lines += section
    unattached = _unattached(view)
    if unattached:
        section = [
            "#### Problems",
            "",
            "The files with these problems change nothing until they are fixed.",
            "",
            *(f"- {code(str(p))}" for p in unattached),
            "",
        ]
        if sum(len(line) + 1 for line in lines + section) <= MARKDOWN_BUDGET:
            lines += section
        else:
            lines += [f"{len(unattached)} problem(s) left out (the comment is too long).", ""]
    if left_out:
        lines += [
            f"Details of {left_out} resource(s) left out (the comment is too long): run `xresource plan`.",
            "",
        ]
    return "\n".join(lines).rstrip("\n")


def _details(r: ResourceView) -> list[str]:
    head = f"#### {code(r.symbol)} {r.words} {code(r.name)} ({code(r.type or '?')})"
    where = (
        f"{code(r.path)}" + (f" line {r.line}" if r.line is not None else "")
        if r.path
        else "no manifest file"
    )
    lines = [head, "", f"{_KEEPS_RUNNING}." if r.action == "rejected" else where, ""]
    body: list[str] = []
    replace = r.action == "replace"
    for item in r.fields:
        mark = FORCES_REPLACE if replace and not item.live else ""
        if item.sign == "~":
            body.append(f"- {item.name}: {value_text(item.old, VALUE_LIMIT)}")
            body.append(f"+ {item.name}: {value_text(item.new, VALUE_LIMIT)}{mark}")
        elif item.sign == "#":
            body.append(f"! {item.note}{mark}")
        else:
            body.append(f"{item.sign} {field_text(item, VALUE_LIMIT, in_replace=replace)}")
    body += [f"! {error}" for error in r.errors]
    if body:
        lines += [*fenced(body, "diff"), ""]
    return lines
