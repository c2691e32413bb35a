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
from pathlib import Path
from typing import Literal

from xresource._transport.owner import SecretOwner
from xresource.errors import XResourceConnectionError
from xresource.prototype import XObjPrototype

log = logging.getLogger("xresource.transport")

TlsMode = Literal["require", "verify-ca", "verify-full", "insecure"]


def tls_context(mode: TlsMode = "verify-full", ca_file: str | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for ``mode`` (see the module docstring), trusting ``ca_file`` if given."""
    context = ssl.create_default_context(cafile=ca_file)
    if mode == "verify-full":
        return context
    context.check_hostname = False
    if mode == "insecure" or (mode == "require" and ca_file is None):
        context.verify_mode = ssl.CERT_NONE
    return context


def ca_path(owner: SecretOwner, ca_file: str) -> str:
    """``ca_file`` resolved (references, ``~``, relative to the manifest's folder); it must exist."""
    path = Path(owner.resolve(ca_file)).expanduser()
    if not path.is_absolute() and owner.manifest_path is not None:
        path = owner.manifest_path.parent / path
    if not path.is_file():
        raise XResourceConnectionError(f"{owner.label}: ca_file {str(path)!r} does not exist")
    return str(path)


class TlsFields(XObjPrototype):
    """TLS options shared by the HTTP-based types (rest_api, websocket, sse)."""

    verify_ssl: bool = True
    """Verify the server's certificate and host name (turn off only for local testing)."""
    ca_file: str | None = None
    """PEM file of the CA certificates to trust instead of the system ones (relative to the manifest)."""

    def ssl_context(self, owner: SecretOwner) -> ssl.SSLContext:
        """An SSL context for these options (``ca_file`` relative to ``owner``'s manifest folder)."""
        cafile = ca_path(owner, self.ca_file) if self.ca_file else None
        if not self.verify_ssl:
            log.warning("%s: TLS certificate verification is turned off (verify_ssl: false)", owner.label)
            return tls_context("insecure", cafile)
        return tls_context("verify-full", cafile)
