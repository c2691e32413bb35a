"""``auth_params``: how an HTTP resource proves who it is.

One of four kinds, recognised by an explicit ``kind`` or by the keys given::

    auth_params: {bearer_token: "${env:API_TOKEN}"}                      # kind: bearer
    auth_params: {username: svc, password: "${env:API_PASSWORD}"}        # kind: basic
    auth_params: {api_key: "${env:API_KEY}", api_key_header: X-Api-Key}  # kind: api_key
    auth_params: {api_key: "${env:API_KEY}", api_key_query: key}         #   ... in the query
    auth_params: {hmac_secret: "${env:SIGNING_KEY}"}                     # kind: hmac (signing.py)

Mixing the keys of two kinds is an error, as is any credential written
literally. The same model serves ``rest_api`` (``auth_params``) and the
``websocket`` and ``sse`` handshakes (``auth``).
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from xresource._transport import signing
from xresource._transport.owner import SecretOwner
from xresource._transport.urls import add_query_param
from xresource.prototype import XObjPrototype
from xresource.secrets import SecretText

HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HeaderName = Annotated[str, Field(pattern=HEADER_NAME_PATTERN, max_length=256)]
DEFAULT_API_KEY_HEADER = "X-API-Key"


class BearerTokenAuth(XObjPrototype):
    """Sends ``Authorization: Bearer <token>``."""

    kind: Literal["bearer"] = "bearer"
    """Selects this kind (optional: ``bearer_token`` alone implies it)."""
    bearer_token: SecretText = Field(min_length=1)
    """The token, as a ``${env:...}`` or ``${file:...}`` reference."""


class BasicAuth(XObjPrototype):
    """Sends HTTP Basic credentials (``Authorization: Basic ...``)."""

    kind: Literal["basic"] = "basic"
    """Selects this kind (optional: ``username``/``password`` imply it)."""
    username: str = Field(min_length=1, pattern=r"^[^:]*$")
    """The user name (no colon, as Basic auth cannot carry one)."""
    password: SecretText = Field(min_length=1)
    """The password, as a reference."""


class ApiKeyAuth(XObjPrototype):
    """Sends an API key in a header (default ``X-API-Key``) or a query parameter."""

    kind: Literal["api_key"] = "api_key"
    """Selects this kind (optional: ``api_key`` implies it)."""
    api_key: SecretText = Field(min_length=1)
    """The key, as a reference."""
    api_key_header: HeaderName | None = None
    """Header that carries the key; ``X-API-Key`` when neither this nor ``api_key_query`` is set."""
    api_key_query: str | None = Field(default=None, min_length=1)
    """Query parameter that carries the key instead of a header (kept out of error messages)."""

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if self.api_key_header and self.api_key_query:
            raise ValueError("give api_key_header or api_key_query, not both")
        return self


class HmacAuth(XObjPrototype):
    """Signs every request with HMAC-SHA256 (canonical string in ``xresource.backends.network.signing``)."""

    kind: Literal["hmac"] = "hmac"
    """Selects this kind (optional: ``hmac_secret`` implies it)."""
    hmac_secret: SecretText = Field(min_length=1)
    """The signing key, as a reference."""
    signature_header: HeaderName = signing.DEFAULT_SIGNATURE_HEADER
    """Header that carries the hex signature."""
    timestamp_header: HeaderName = signing.DEFAULT_TIMESTAMP_HEADER
    """Header that carries the signing time (Unix seconds), which the signature covers."""
    key_id: str | None = None
    """Optional key identifier sent in ``key_id_header`` so the server can pick the key."""
    key_id_header: HeaderName = "X-Key-Id"
    """Header that carries ``key_id``."""


_KIND_BY_KEY = (
    ("bearer_token", "bearer"),
    ("password", "basic"),
    ("username", "basic"),
    ("api_key", "api_key"),
    ("hmac_secret", "hmac"),
)


def _auth_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        kind = getattr(value, "kind", None)
        return kind if isinstance(kind, str) else None
    if isinstance(value, dict):
        kind = value.get("kind")
        if isinstance(kind, str):
            return kind
        for key, implied in _KIND_BY_KEY:
            if key in value:
                return implied
    return None


AuthParams = Annotated[
    Annotated[BearerTokenAuth, Tag("bearer")]
    | Annotated[BasicAuth, Tag("basic")]
    | Annotated[ApiKeyAuth, Tag("api_key")]
    | Annotated[HmacAuth, Tag("hmac")],
    Discriminator(
        _auth_kind,
        custom_error_type="auth_kind",
        custom_error_message=(
            "auth needs one kind: bearer (bearer_token), basic (username and password), "
            "api_key (api_key with api_key_header or api_key_query) or hmac (hmac_secret)"
        ),
    ),
]
"""Credentials for an HTTP resource: bearer, basic, api_key or hmac."""


class PreparedAuth:
    """The resolved credentials of one connection; never prints them."""

    __slots__ = ("_hmac", "_query_re", "kind", "query_param", "static_headers")

    def __init__(
        self,
        kind: str | None,
        static_headers: dict[str, str] | None = None,
        query_param: tuple[str, str] | None = None,
        hmac: tuple[str, HmacAuth] | None = None,
    ) -> None:
        self.kind = kind
        self.static_headers: dict[str, str] = static_headers or {}
        self.query_param = query_param
        self._hmac = hmac
        self._query_re: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        return f"PreparedAuth(kind={self.kind!r})"

    @property
    def signs(self) -> bool:
        return self._hmac is not None

    def signature_headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]:
        """The per-request headers of the ``hmac`` kind (empty for the other kinds)."""
        if self._hmac is None:
            return {}
        key, params = self._hmac
        headers = signing.signed_headers(
            key,
            method,
            path_qs,
            body,
            signature_header=params.signature_header,
            timestamp_header=params.timestamp_header,
        )
        if params.key_id:
            headers[params.key_id_header] = params.key_id
        return headers

    def handshake(self, url: str, method: str = "GET") -> tuple[str, dict[str, str]]:
        """URL and headers for a bodiless request (a WebSocket or SSE handshake)."""
        if self.query_param is not None:
            url = add_query_param(url, *self.query_param)
        headers = dict(self.static_headers)
        if self._hmac is not None:
            parts = urlsplit(url)
            path_qs = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers.update(self.signature_headers(method, path_qs, b""))
        return url, headers

    def mask_url(self, url: str) -> str:
        """``url`` (or any text holding it) with the API key query value replaced by ``***``.

        Matched by parameter name, so every encoding of the value is caught
        (yarl, urllib and httpx escape different characters).
        """
        if self.query_param is None:
            return url
        if self._query_re is None:
            name = self.query_param[0]
            names = "|".join(re.escape(n) for n in {name, quote(name, safe=""), quote_plus(name)})
            self._query_re = re.compile(rf"([?&;](?:{names})=)[^&#\s'\"<>]*")
        return self._query_re.sub(r"\1***", url)


def prepare_auth(auth: BaseModel | None, owner: SecretOwner) -> PreparedAuth:
    """Resolve ``auth``'s references through ``owner`` (which then scrubs them from messages)."""
    if auth is None:
        return PreparedAuth(None)
    if isinstance(auth, BearerTokenAuth):
        token = owner.resolve(auth.bearer_token)
        return PreparedAuth("bearer", {"Authorization": f"Bearer {token}"})
    if isinstance(auth, BasicAuth):
        return PreparedAuth("basic", {"Authorization": basic_header(owner, auth.username, auth.password)})
    if isinstance(auth, ApiKeyAuth):
        key = owner.resolve(auth.api_key)
        owner.remember_secrets(quote(key, safe=""), quote_plus(key))
        if auth.api_key_query:
            return PreparedAuth("api_key", query_param=(auth.api_key_query, key))
        return PreparedAuth("api_key", {auth.api_key_header or DEFAULT_API_KEY_HEADER: key})
    if isinstance(auth, HmacAuth):
        return PreparedAuth("hmac", hmac=(owner.resolve(auth.hmac_secret), auth))
    raise TypeError(f"unsupported auth kind {type(auth).__name__}")


def basic_header(owner: SecretOwner, username: str, password: str) -> str:
    """``Basic base64(user:password)`` from (possibly referenced) credentials."""
    user = owner.resolve(username)
    secret = owner.resolve(password)
    token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
    owner.remember_secrets(token)
    return f"Basic {token}"
