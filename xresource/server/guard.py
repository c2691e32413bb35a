"""Request checks shared by every framework: the ``Host`` allow-list and the rules for ``POST /reload``.

Framework-free on purpose: ``xresource serve`` (aiohttp) and the integrations
(aiohttp, Starlette) call the same functions with the request's headers.

- DNS rebinding: a page on ``evil.example`` whose name later resolves to
  127.0.0.1 reaches a loopback server with ``Host: evil.example``. Only the
  bound address, ``localhost`` names (when bound to loopback or to every
  interface) and the ``allowed_hosts`` setting are accepted.
- Cross-site requests: a form or ``fetch(..., {mode: "no-cors"})`` on any page
  can send a "simple" POST (form or text body, no custom header) without a
  CORS preflight. ``POST /reload`` accepts only a request a browser would have
  preflighted (JSON body type or an ``Authorization`` header), never one that
  says it comes from another origin, and with the token when one is set.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from xresource.errors import XResourceSecretError
from xresource.secrets import Secret, resolve
from xresource.settings import ServerSettings

_WILDCARDS = {"", "0.0.0.0", "::"}
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the HTTP status and a message for the client."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def split_host(value: str) -> str:
    """``Host`` header -> lower-case host name or IP without port, brackets or trailing dot."""
    host = value.strip().lower()
    if host.startswith("["):  # [::1]:8080
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_local_name(host: str) -> bool:
    return host in _LOCAL_NAMES or host.endswith(".localhost")


class HostPolicy:
    """Which ``Host`` header values a server bound to ``bound`` accepts."""

    def __init__(self, bound: str | Iterable[str] | None, allowed: Iterable[str] = ()) -> None:
        names = [bound] if isinstance(bound, str) or bound is None else list(bound)
        self._bound = {split_host(b or "") for b in names}
        self._allowed = {a.strip().lower().rstrip(".") for a in allowed if a.strip()}
        self.check_off = "*" in self._allowed
        bound_ips = [_ip(b) for b in self._bound]
        self._wildcard = bool(self._bound & _WILDCARDS)
        self._loopback = any(_is_local_name(b) for b in self._bound) or any(
            ip is not None and ip.is_loopback for ip in bound_ips
        )
        self._bound_ips = {ip for ip in bound_ips if ip is not None}

    def allows(self, host_header: str | None) -> bool:
        """True when a request naming ``host_header`` may be answered.

        A request without ``Host`` (HTTP/1.0 tools) is allowed: a browser always sends
        one, so its absence cannot be a rebinding attack.
        """
        if self.check_off or host_header is None:
            return True
        host = split_host(host_header)
        if not host:
            return False
        if host in self._allowed or any(
            a.startswith(".") and (host.endswith(a) or host == a[1:]) for a in self._allowed
        ):
            return True
        if _is_local_name(host):
            return self._loopback or self._wildcard
        ip = _ip(host)
        if ip is not None:
            # An IP literal cannot be rebound; it must still be an address this server is on.
            if self._wildcard:
                return True
            if ip in self._bound_ips:
                return True
            return self._loopback and ip.is_loopback
        return host in self._bound

    def refusal(self, host_header: str | None) -> Refusal | None:
        if self.allows(host_header):
            return None
        return Refusal(
            421,
            "this server does not answer for that Host name; "
            "add it to the [server] allowed_hosts setting if it is yours",
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is None else str(value)


def reload_refusal(headers: Mapping[str, str], token: str | None) -> Refusal | None:
    """None when a ``POST /reload`` with these headers may run; else why not.

    ``headers`` must look names up case-insensitively (both frameworks' header maps do).
    """
    site = (_header(headers, "Sec-Fetch-Site") or "").lower()
    if site in ("cross-site", "same-site"):
        return Refusal(403, "cross-site requests may not reload")
    origin = _header(headers, "Origin")
    if origin is not None and not _same_origin(origin, _header(headers, "Host")):
        return Refusal(403, "requests from another origin may not reload")
    authorization = _header(headers, "Authorization")
    content_type = (_header(headers, "Content-Type") or "").split(";", 1)[0].strip().lower()
    if authorization is None and content_type != "application/json":
        # A browser sends a form or text/plain POST cross-site without asking first; it
        # preflights a JSON body or an Authorization header, which this server never allows.
        return Refusal(
            415,
            "send POST /reload with 'Content-Type: application/json' (the body may be empty) "
            "or with an Authorization header",
        )
    if token is not None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), token.encode("utf-8")
        ):
            return Refusal(
                401,
                "POST /reload needs 'Authorization: Bearer <token>' (the [server] reload_token setting)",
                (("WWW-Authenticate", 'Bearer realm="xresource"'),),
            )
    return None


def _same_origin(origin: str, host_header: str | None) -> bool:
    if host_header is None or origin.strip().lower() == "null":
        return False
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return _netloc(parts.netloc, default_port) == _netloc(host_header, default_port)


def _netloc(value: str, default_port: int) -> tuple[str, int]:
    host = split_host(value)
    rest = value.strip().lower()
    port_text = rest.rsplit("]", 1)[-1] if rest.startswith("[") else rest
    port = default_port
    if port_text.count(":") == 1:
        candidate = port_text.rsplit(":", 1)[1]
        port = int(candidate) if candidate.isdigit() else -1
    return host, port


class Protection:
    """The checks one set of routes applies: the Host policy and the reload token (held as a secret)."""

    def __init__(self, hosts: HostPolicy, reload_token: Secret | None = None) -> None:
        self.hosts = hosts
        self._token = reload_token

    @classmethod
    def from_settings(cls, server: ServerSettings, bound: str | Iterable[str] | None) -> Protection:
        """Build from the ``[server]`` settings; a token reference is resolved now (a missing
        variable or file raises ``XResourceSecretError`` naming the setting, not the value)."""
        token = None
        if server.reload_token is not None:
            token = Secret(resolve(server.reload_token, owner="[server] reload_token"))
            if not token.get_secret_value():
                raise XResourceSecretError("[server] reload_token: the reference resolves to an empty value")
        return cls(HostPolicy(bound, server.allowed_hosts), token)

    def host_refusal(self, host_header: str | None) -> Refusal | None:
        return self.hosts.refusal(host_header)

    def reload_refusal(self, headers: Mapping[str, str]) -> Refusal | None:
        token = self._token.get_secret_value() if self._token is not None else None
        return reload_refusal(headers, token)
