"""Payloads on the wire: what ``publish`` sends and how a received payload is decoded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from xresource._transport.json_bytes import loads as loads_json

_JSON_OPENERS = frozenset(b"{[")

# One encoder for every publish: json.dumps() with options builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """The C encoder ``_JSON_ENCODER.encode`` builds on every call, built once (None without it).

    No circular-reference bookkeeping: a cycle then ends in RecursionError,
    which ``encode_payload`` reports like any other unencodable value.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        found: Callable[[Any, int], list[str]] = make(
            None,
            _JSON_ENCODER.default,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )
        if "".join(found({"a": [1.5, None]}, 0)) != '{"a":[1.5,null]}':
            return None
    except TypeError:  # another Python's signature: the general path
        return None
    return found


_ENCODE = _c_encoder()


def decode_payload(raw: bytes | str | None) -> Any:
    """JSON-decode when the payload is JSON, else return text (or bytes if not UTF-8)."""
    if raw is None:
        return None
    text: str
    if type(raw) is bytes and raw and raw[0] in _JSON_OPENERS:
        # The common case, straight to the parser.
        try:
            return loads_json(raw)
        except ValueError:
            pass  # not JSON after all (or not UTF-8): the general path decides
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(raw)
    else:
        text = raw
    stripped = text.lstrip()
    first = stripped[:1]
    if first in ("{", "[", '"') or stripped in ("true", "false", "null") or _looks_numeric(stripped):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _looks_numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))


def encode_payload(data: Any) -> bytes:
    """bytes pass through, str is UTF-8, anything else (dict, list, numbers, None) is JSON."""
    kind = type(data)
    if kind is not dict and kind is not list:  # the usual case skips these checks
        if isinstance(data, bytes | bytearray | memoryview):
            return bytes(data)
        if isinstance(data, str):
            return data.encode("utf-8")
    try:
        if _ENCODE is not None:
            return "".join(_ENCODE(data, 0)).encode("utf-8")
        return _JSON_ENCODER.encode(data).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"cannot publish a {type(data).__name__}: not JSON-serialisable ({exc})") from None
