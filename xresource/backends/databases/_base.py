"""``DatabaseResource``: pooled database backends (postgresql, mysql, mongodb)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, TypedDict

from pydantic import Field, model_validator

from xresource.resource import XResource


class PoolStats(TypedDict):
    """Pool occupancy, as reported by ``get_pool_stats`` and ``/metrics``."""

    size: int
    in_use: int
    idle: int
    waiters: int
    max: int


class DatabaseResource(XResource):
    """A database reached through a connection pool."""

    family: ClassVar[str] = "database"

    min_pool_size: int = Field(default=1, ge=0, le=10_000)
    """Connections opened at connect and kept open."""
    max_pool_size: int = Field(default=10, ge=1, le=10_000)
    """Upper bound of pooled connections."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds allowed to open a connection."""
    acquire_timeout: float = Field(default=10.0, gt=0)
    """Seconds ``acquire()`` waits for a free connection before ``XResourcePoolExhaustedError``."""

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseResource:
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(
                f"min_pool_size ({self.min_pool_size}) is larger than max_pool_size ({self.max_pool_size})"
            )
        return self

    def acquire(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        """Borrow a pooled connection; ``XResourcePoolExhaustedError`` after ``timeout``."""
        raise NotImplementedError

    def get_pool_stats(self) -> PoolStats:
        """Size, in use, idle, waiters and max of the pool."""
        return PoolStats(size=0, in_use=0, idle=0, waiters=0, max=self.max_pool_size)

    def _metadata_details(self) -> dict[str, Any]:
        return {"pool": dict(self.get_pool_stats())}
