"""JSON from bytes off the wire: ``json.loads`` results, without its per-call Python steps.

``json.loads(bytes)`` guesses the encoding, decodes, and matches whitespace
with regular expressions in Python before and after the C scanner runs: for a
small document that is two thirds of the time. :func:`loads` decodes UTF-8 and
calls the same C scanner directly (the default decoder's, so the same options),
and hands anything it cannot read (UTF-16 or UTF-32, a lone surrogate, bad
JSON) to ``json.loads`` itself, so results and errors are ``json.loads``'s.
Stream payloads and REST answers both decode through it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

_SPACE = " \t\n\r"  # JSON's whitespace (str.isspace would accept more)
# The decoder's C scanner is an instance attribute that the type stubs do not declare.
_SCAN = cast("Callable[[str, int], tuple[Any, int]]", vars(json.JSONDecoder())["scan_once"])


def loads(raw: bytes) -> Any:
    """``json.loads(raw)``: the same value, or the same ``ValueError``."""
    try:
        text = raw.decode("utf-8")
        start = 0 if text[:1] not in _SPACE else len(text) - len(text.lstrip(_SPACE))
        value, end = _SCAN(text, start)
        if end == len(text) or not text[end:].strip(_SPACE):
            return value
    except (ValueError, StopIteration):  # UnicodeDecodeError is a ValueError; StopIteration: no value
        pass
    return json.loads(raw)  # what json.loads says, error included
