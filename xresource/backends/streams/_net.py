"""URL target and TLS helpers of the broker backends (to move to the shared transport package)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit


def url_target(url: str, default_port: int) -> str:
    """``host:port`` of a connection URL, never its user-info (for ``target()``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or default_port
    except ValueError:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """An SSL context that verifies the server, trusting ``ca_file`` if given (else the system CAs)."""
    return ssl.create_default_context(cafile=ca_file)
