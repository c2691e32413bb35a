"""Masking values resolved from references out of text before anyone sees it.

Exact matching is not enough: a server truncates what it quotes (PostgreSQL
cuts a database name at 63 bytes), an HTTP client re-encodes a token (``%2F``
becomes ``/``), a server folds case. The rule, also in ``docs/secrets.md``:

- A value of ``MIN_WINDOW`` (8) characters or more is masked wherever any
  8 consecutive characters of it appear, in any letter case, as written,
  percent-encoded or percent-decoded. A prefix, a suffix or any part of 8
  characters or more is caught; the whole run it covers becomes ``***``.
- A shorter value is masked only where it stands alone: between the start or
  end of the text, white space, quotes and ``= , ; ( ) [ ] { } < >``. So a
  one-letter value never turns every "s" of a message into "***", and
  ``127.0.0.1`` is not garbled by a value of ``1``. Short values are weak
  secrets anyway; use long ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MIN_WINDOW = 8
MASK = "***"
_BOUNDARY = r"""\s"'`=,;()\[\]{}<>"""


def _forms(value: str) -> set[str]:
    """The value as written, percent-decoded and percent-encoded (as clients send it)."""
    forms = {
        value,
        unquote(value),
        unquote_plus(value),
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
    }
    return {f for f in forms if f}


class Scrubber:
    """Masks a fixed set of values out of text (built once per set, see :func:`scrubber`)."""

    __slots__ = ("_short", "_windows")

    def __init__(self, values: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in values:
            if value:
                forms |= _forms(value)
        self._windows = {
            form.lower()[i : i + MIN_WINDOW]
            for form in forms
            if len(form) >= MIN_WINDOW
            for i in range(len(form) - MIN_WINDOW + 1)
        }
        short = sorted((f for f in forms if len(f) < MIN_WINDOW), key=len, reverse=True)
        self._short = (
            re.compile(rf"(?<![^{_BOUNDARY}])(?:{'|'.join(map(re.escape, short))})(?![^{_BOUNDARY}])")
            if short
            else None
        )

    def __call__(self, text: str) -> str:
        if self._windows and len(text) >= MIN_WINDOW:
            text = self._mask_windows(text)
        if self._short is not None:
            text = self._short.sub(MASK, text)
        return text

    def _mask_windows(self, text: str) -> str:
        folded = text.lower()
        if len(folded) != len(text):  # a rare character whose lower case is longer: compare as is
            folded = text
        covered_until = -1
        spans: list[tuple[int, int]] = []
        for start in range(len(text) - MIN_WINDOW + 1):
            if folded[start : start + MIN_WINDOW] in self._windows:
                end = start + MIN_WINDOW
                if spans and start <= covered_until:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((start, end))
                covered_until = end
        if not spans:
            return text
        out: list[str] = []
        previous = 0
        for start, end in spans:
            out.append(text[previous:start])
            out.append(MASK)
            previous = end
        out.append(text[previous:])
        return "".join(out)


@lru_cache(maxsize=256)
def scrubber(values: tuple[str, ...]) -> Scrubber:
    """The scrubber for ``values`` (cached: a resource scrubs many messages with the same set)."""
    return Scrubber(values)
