"""Text that is safe to print to a terminal or a CI log, whatever a manifest put in it.

Names, keys and file names come from untrusted manifests. A newline in one could
start a line of its own (``::error ...`` is a GitHub workflow command when a log
line starts with it), an escape sequence could rewrite the terminal, and
bidirectional controls could make a line read differently than it is. Every
line of text output goes through :func:`printable`: control characters, line
and paragraph separators and bidi controls are written as escapes.
"""

from __future__ import annotations

import re

_UNSAFE_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r"}
    if char in named:
        return named[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (tabs kept); one line stays one line."""
    return _UNSAFE_RE.sub(_escape, text)
