"""The pydantic base of every xresource model."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


class XObjPrototype(BaseModel):
    """Base model: unknown fields are errors and assignments are validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        # Build a model's validator on its first use, not at import: a CLI run that validates
        # one type then never pays for the bases and the types it does not meet.
        defer_build=True,
    )
    # Fields are documented by a docstring under each one; xresource.docstrings turns
    # them into schema descriptions when schemas are generated (not at import).


def _now() -> datetime:
    return datetime.now(UTC)


class ResourceMetadata(XObjPrototype):
    """Who a resource is, independent of its backend."""

    name: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
