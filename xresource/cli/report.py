"""Problem reports for ``validate``: text, json, github annotations and JUnit XML.

Everything in a problem may come from an untrusted manifest (names, keys, file
names). Text, GitHub and JUnit output escape control characters
(:func:`xresource.printable.printable`), so a newline in a key can never start
a line of its own, such as a ``::error`` workflow command; JSON escapes them by
itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from xresource.errors import Problem
from xresource.printable import printable

FORMATS = ("text", "json", "github", "junit")


def summary(files: int, resources: int, problems: Sequence[Problem]) -> str:
    bad_files = len({p.file for p in problems})
    verdict = "valid" if not problems else "invalid"
    return (
        f"{verdict}: {files} file{'s' if files != 1 else ''}, {resources} resource"
        f"{'s' if resources != 1 else ''}, {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        f" in {bad_files} file{'s' if bad_files != 1 else ''}"
    )


def render(fmt: str, files: Sequence[Path], resources: int, problems: Sequence[Problem]) -> str:
    if fmt == "json":
        return _json(files, resources, problems)
    if fmt == "github":
        return _github(files, resources, problems)
    if fmt == "junit":
        return _junit(files, problems)
    lines = [printable(str(p)) for p in problems]
    lines.append(summary(len(files), resources, problems))
    return "\n".join(lines)


def problem_dict(p: Problem) -> dict[str, object]:
    return {
        "file": p.file,
        "line": p.line,
        "column": p.column,
        "resource": p.resource,
        "field": p.field,
        "message": p.message,
        "code": p.code,
    }


def _json(files: Sequence[Path], resources: int, problems: Sequence[Problem]) -> str:
    return json.dumps(
        {
            "valid": not problems,
            "files": len(files),
            "resources": resources,
            "problem_count": len(problems),
            "problems": [problem_dict(p) for p in problems],
        },
        indent=2,
    )


def escape_annotation_data(text: str) -> str:
    # GitHub's own escapes for the line breaks it understands, then nothing else raw.
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def escape_annotation_property(text: str) -> str:
    return escape_annotation_data(text).replace(":", "%3A").replace(",", "%2C")


def _github(files: Sequence[Path], resources: int, problems: Sequence[Problem]) -> str:
    lines = []
    for p in problems:
        props = [f"file={escape_annotation_property(p.file)}"]
        if p.line is not None:
            props.append(f"line={p.line}")
        if p.column is not None:
            props.append(f"col={p.column}")
        title = "xresource" + (f" {p.resource}" if p.resource else "") + (f".{p.field}" if p.field else "")
        props.append(f"title={escape_annotation_property(title)}")
        lines.append(f"::error {','.join(props)}::{escape_annotation_data(p.message)}")
    lines.append(summary(len(files), resources, problems))
    return "\n".join(lines)


def _junit(files: Sequence[Path], problems: Sequence[Problem]) -> str:
    from xml.etree import ElementTree as ET  # only this format needs it: not on validate's cold path

    by_file: dict[str, list[Problem]] = {str(f): [] for f in files}
    for p in problems:
        by_file.setdefault(p.file, []).append(p)
    suite = ET.Element(
        "testsuite",
        name="xresource validate",
        tests=str(len(by_file)),
        failures=str(sum(1 for ps in by_file.values() if ps)),
        errors="0",
    )
    for file, file_problems in by_file.items():
        # XML 1.0 cannot hold most control characters at all: escape them.
        case = ET.SubElement(suite, "testcase", classname="xresource.validate", name=printable(file))
        for p in file_problems:
            failure = ET.SubElement(case, "failure", message=printable(p.message), type=printable(p.code))
            failure.text = printable(str(p))
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)
