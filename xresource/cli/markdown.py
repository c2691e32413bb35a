"""Markdown that untrusted text cannot break out of, for comments on pull requests.

Names, keys, values and file names in a plan come from manifests a hostile
pull request may have written. Such text goes only into code spans and fenced
code blocks, where GitHub renders no HTML, links, images or @mentions; the
delimiters are longer than any run of backticks in the text, and control
characters are escaped (:func:`xresource.printable.printable`) so one line
stays one line and cannot close a block or start a table row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from xresource.printable import printable

_BACKTICKS_RE = re.compile(r"`+")


def _longest_backtick_run(text: str) -> int:
    return max((len(m.group()) for m in _BACKTICKS_RE.finditer(text)), default=0)


def code(text: str, *, in_table: bool = False) -> str:
    """``text`` as an inline code span; ``in_table`` also escapes ``|`` (GFM splits cells on it)."""
    safe = printable(text)
    if in_table:
        safe = safe.replace("|", "\\|")
    if not safe.strip():
        safe = safe or " "
    delimiter = "`" * (_longest_backtick_run(safe) + 1)
    # CommonMark strips one space on each side: pad when the text itself starts or ends with a
    # backtick (or a space, which would otherwise be lost).
    if safe[0] in "` " or safe[-1] in "` ":
        safe = f" {safe} "
    return f"{delimiter}{safe}{delimiter}"


def fenced(lines: Iterable[str], language: str = "") -> list[str]:
    """A fenced code block holding ``lines`` verbatim (each escaped to one line)."""
    body = [printable(line) for line in lines]
    fence = "`" * max(3, max((_longest_backtick_run(line) for line in body), default=0) + 1)
    return [f"{fence}{language}", *body, fence]
