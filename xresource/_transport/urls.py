"""Connection URLs: split (secret references kept), ``host:port`` targets, query parameters.

References may hold characters that are URL syntax (``${file:/run/secrets/pw}``
has a slash; a reference name could hold ``@`` or ``:``), so they are swapped
for opaque placeholders before the URL is split, and restored in each part.
Nothing here resolves a reference: the parts come back as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from xresource.secrets import REFERENCE_RE, is_only_references, literal_url_password_message

_PLACEHOLDER = "\ue000{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True)
class UrlParts:
    """A connection URL split into parts, each as written (references unresolved)."""

    scheme: str
    user: str | None
    password: str | None
    hostinfo: str
    host: str | None
    port: int | None
    database: str | None
    query: dict[str, str] = field(default_factory=dict)
    without_password: str = ""
    """The whole URL with the password (and its ``:``) removed, references kept."""

    port_reference: str | None = None
    """The port when it is written as a reference (``${env:PORT}``); ``port`` is then None."""

    def resolved_port(self, resolve: Callable[[str], str], default_port: int | None) -> int | None:
        """The port to connect to, resolving a referenced one (its value is never quoted)."""
        if self.port_reference is None:
            return self.port or default_port
        text = resolve(self.port_reference)
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ValueError(f"the port {self.port_reference} does not resolve to a number from 1 to 65535")
        return int(text)

    def address(self, default_port: int | None) -> str:
        """``host:port`` (or the host list as written); never holds a password."""
        if self.host is None:
            return self.hostinfo
        port = self.port_reference or self.port or default_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}" if port else host


def parse_url(text: str, schemes: tuple[str, ...]) -> UrlParts:
    """Split a connection URL that may contain secret references.

    Raises ``ValueError`` with a message fit for a manifest problem.
    """
    refs: list[str] = []

    def hide(match: re.Match[str]) -> str:
        refs.append(match.group(0))
        return _PLACEHOLDER.format(len(refs) - 1)

    def show(part: str) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: refs[int(m.group(1))], part)

    masked = REFERENCE_RE.sub(hide, text.strip())
    scheme, sep, rest = masked.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise ValueError(f"the connection string must start with {' or '.join(s + '://' for s in schemes)}")
    netloc_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            netloc_end = min(netloc_end, index)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hostinfo = netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = show(unquote(raw_user)) or None
        if colon:
            password = show(raw_password)
            if password and not is_only_references(password):
                raise ValueError(literal_url_password_message(scheme.lower()))
    host, port_text = _split_hostinfo(hostinfo)
    port, port_reference = _port(show(port_text)) if port_text else (None, None)
    path, _, query_text = tail.partition("?")
    query_text = query_text.partition("#")[0]
    database = show(unquote(path.lstrip("/"))) or None
    query = {k: show(v) for k, v in parse_qsl(query_text, keep_blank_values=True)}
    base = scheme + "://" + ((show(userinfo.partition(":")[0]) + "@") if at else "")
    return UrlParts(
        scheme=scheme.lower(),
        user=user,
        password=password or None,
        hostinfo=show(hostinfo),
        host=show(host) if host is not None else None,
        port=port,
        port_reference=port_reference,
        database=database,
        query=query,
        without_password=base + show(hostinfo) + show(tail),
    )


def _split_hostinfo(hostinfo: str) -> tuple[str | None, str | None]:
    """``host``, ``host:port``, ``[v6]:port`` -> host and port text; a host list gives ``(None, None)``."""
    if not hostinfo or "," in hostinfo:
        return None, None
    if hostinfo.startswith("["):
        host, _, after = hostinfo[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = hostinfo.partition(":")
    return unquote(host), port_text or None


def _port(text: str) -> tuple[int | None, str | None]:
    """A port as written: a number, or references resolved at connect (checked then)."""
    if is_only_references(text):
        return None, text
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"the port {text!r} in the connection string is not a number from 1 to 65535")
    return int(text), None


def url_target(url: str, default_port: int) -> str:
    """``host:port`` of a connection URL, never its user-info (for ``target()``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or default_port
    except ValueError:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def add_query_param(url: str, name: str, value: str) -> str:
    """Append ``name=value`` (percent-encoded) to ``url``'s query."""
    parts = urlsplit(url)
    extra = urlencode({name: value})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))
