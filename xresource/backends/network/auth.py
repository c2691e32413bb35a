"""Re-exports for the stream backends, which import ``auth_params`` from here until they
move to ``xresource._transport.auth``; delete this module then."""

from xresource._transport.auth import AuthParams, HeaderName, PreparedAuth, prepare_auth

__all__ = ["AuthParams", "HeaderName", "PreparedAuth", "prepare_auth"]
