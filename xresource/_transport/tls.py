"""One ``ssl.SSLContext`` builder for every family, and the TLS fields of the HTTP-based types.

Modes (libpq's names, which the SQL backends expose as ``sslmode``):

- ``verify-full``: verify the certificate chain and the host name (the default);
- ``verify-ca``: verify the chain, not the host name;
- ``require``: encrypt; verify the chain only when a CA file is given (libpq
  semantics), else nothing;
- ``insecure``: encrypt, verify nothing (``verify_ssl: false``; logged as a warning by callers).
"""

from __future__ import annotations

import logging
import ssl
from typing import Literal

from xresource._transport.owner import SecretOwner
from xresource.prototype import XObjPrototype

log = logging.getLogger("xresource.transport")

TlsMode = Literal["require", "verify-ca", "verify-full", "insecure"]


def tls_context(mode: TlsMode = "verify-full", ca_data: str | bytes | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for ``mode`` (see the module docstring), trusting the CA certificates
    in ``ca_data`` if given (PEM text or DER bytes, read through ``XResource.read_ca_file``:
    a path would be opened again by ssl, after the allowed-roots check)."""
    context = ssl.create_default_context(cadata=ca_data)
    if mode == "verify-full":
        return context
    context.check_hostname = False
    if mode == "insecure" or (mode == "require" and ca_data is None):
        context.verify_mode = ssl.CERT_NONE
    return context


class TlsFields(XObjPrototype):
    """TLS options shared by the HTTP-based types (rest_api, websocket, sse)."""

    verify_ssl: bool = True
    """Verify the server's certificate and host name (turn off only for local testing)."""
    ca_file: str | None = None
    """PEM file of the CA certificates to trust instead of the system ones (relative to the manifest)."""

    def ssl_context(self, owner: SecretOwner) -> ssl.SSLContext:
        """An SSL context for these options (``ca_file`` relative to ``owner``'s manifest folder)."""
        ca_data = owner.read_ca_file(self.ca_file)  # checked against the allowed roots at this open
        if not self.verify_ssl:
            log.warning("%s: TLS certificate verification is turned off (verify_ssl: false)", owner.label)
            return tls_context("insecure", ca_data)
        return tls_context("verify-full", ca_data)
