"""HMAC-SHA256 request signing (the ``hmac`` kind of ``auth_params``).

Every signed request carries two headers (names configurable):

- the timestamp header (default ``X-Timestamp``): the Unix time of signing in
  whole seconds, as a decimal string;
- the signature header (default ``X-Signature``): the lower-case hex digest of
  ``HMAC-SHA256(key, canonical)``, where ``key`` is the UTF-8 bytes of the
  secret and ``canonical`` is these four parts joined by a single line feed
  (``\\n``, 0x0A), with no trailing line feed::

      METHOD       the method in upper case, e.g. POST
      PATH         the request target exactly as sent on the wire: the
                   percent-encoded path, plus "?" and the query when there is
                   one, e.g. /v1/orders?limit=10
      TIMESTAMP    the timestamp header's value, e.g. 1700000000
      BODY         the exact body bytes sent (empty when there is no body)

  For example ``b"POST\\n/v1/orders?limit=10\\n1700000000\\n" + body``.

A verifier recomputes the digest from the request it received, compares it in
constant time and rejects timestamps too far from its clock (replay window).
:func:`verify` does all three for Python servers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_SIGNATURE_HEADER = "X-Signature"
DEFAULT_TIMESTAMP_HEADER = "X-Timestamp"


def canonical_request(method: str, path_qs: str, timestamp: str, body: bytes = b"") -> bytes:
    """The bytes that are signed (see the module docstring)."""
    head = f"{method.upper()}\n{path_qs}\n{timestamp}\n".encode()
    return head + body


def sign(key: str | bytes, method: str, path_qs: str, timestamp: str, body: bytes = b"") -> str:
    """Hex HMAC-SHA256 of the canonical request."""
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(
        key_bytes, canonical_request(method, path_qs, timestamp, body), hashlib.sha256
    ).hexdigest()


def signed_headers(
    key: str | bytes,
    method: str,
    path_qs: str,
    body: bytes = b"",
    *,
    signature_header: str = DEFAULT_SIGNATURE_HEADER,
    timestamp_header: str = DEFAULT_TIMESTAMP_HEADER,
    now: float | None = None,
) -> dict[str, str]:
    """The timestamp and signature headers for one request."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        timestamp_header: timestamp,
        signature_header: sign(key, method, path_qs, timestamp, body),
    }


def verify(
    key: str | bytes,
    method: str,
    path_qs: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    max_skew: float = 300.0,
    now: float | None = None,
) -> bool:
    """Server side: ``True`` when ``signature`` matches and ``timestamp`` is within ``max_skew`` seconds."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > max_skew:
        return False
    expected = sign(key, method, path_qs, timestamp, body)
    return hmac.compare_digest(expected, signature.strip().lower())
