"""Loggers that never write a resource's resolved secrets.

Drivers log handshakes and requests at debug level, headers and all, so an
``Authorization`` value would otherwise reach the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from xresource._transport.owner import SecretOwner


class ScrubbingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger to hand a driver that takes one (websockets): every line loses the owner's secrets."""

    def __init__(self, logger: logging.Logger, owner: SecretOwner) -> None:
        super().__init__(logger, {})
        self._owner = owner

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        kwargs.pop("extra", None)
        self.logger.log(level, "%s", self._owner.scrub(text), **kwargs)


class _SecretsFilter(logging.Filter):
    """Scrubs registered secrets from the records of a driver logger we cannot replace (httpx)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[int, Callable[[str], str]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.sources:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                return True
            for scrub in list(self.sources.values()):
                message = scrub(message)
            record.msg, record.args = message, None
        return True


_FILTERS: dict[str, _SecretsFilter] = {}


def guard_logger(name: str, owner: SecretOwner, *, active: bool = True) -> None:
    """Scrub ``owner``'s resolved secrets from records of logger ``name`` (``active=False`` stops it)."""
    guard = _FILTERS.get(name)
    if guard is None:
        guard = _FILTERS[name] = _SecretsFilter()
        logging.getLogger(name).addFilter(guard)
    if active:
        guard.sources[id(owner)] = owner.scrub
    else:
        guard.sources.pop(id(owner), None)
