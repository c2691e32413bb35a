"""HMAC-SHA256 request signing of the ``hmac`` kind of ``auth_params``: the public home of
:func:`verify` for Python servers (the code lives in ``xresource._transport.signing``)."""

from xresource._transport.signing import (
    DEFAULT_SIGNATURE_HEADER,
    DEFAULT_TIMESTAMP_HEADER,
    canonical_request,
    sign,
    signed_headers,
    verify,
)

__all__ = [
    "DEFAULT_SIGNATURE_HEADER",
    "DEFAULT_TIMESTAMP_HEADER",
    "canonical_request",
    "sign",
    "signed_headers",
    "verify",
]
