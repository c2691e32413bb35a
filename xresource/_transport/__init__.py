"""Transport code every family shares: TLS, credentials, signing, log scrubbing, URLs, backoff.

Private to xresource. The families (``backends.files``, ``.databases``,
``.network``, ``.streams``) do not import each other (an import-linter
contract says so); what two of them need lives here instead:

- :mod:`.tls`: the one ``ssl.SSLContext`` builder and the ``verify_ssl`` /
  ``ca_file`` fields of the HTTP-based types;
- :mod:`.auth` and :mod:`.signing`: ``auth_params`` (bearer, basic, api_key,
  hmac) and the HMAC request signature;
- :mod:`.scrubbing`: loggers that drop a resource's resolved secrets;
- :mod:`.urls`: connection URLs that may hold secret references, ``host:port``
  targets, query parameters;
- :mod:`.http`: the ``http(s)://`` URL field and the error for an HTTP status;
- :mod:`.backoff`: the one retry delay policy;
- :mod:`.json_bytes`: ``json.loads`` of bytes off the wire, faster (stream payloads, REST answers).

Nothing here imports a driver or a backend, so importing it stays cheap.
"""
