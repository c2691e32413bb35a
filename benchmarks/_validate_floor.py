"""The floor of a pydantic-based ``validate``: the least any such CLI has to do for one file.

Run as a script with one manifest: start Python, import pydantic and PyYAML, define
one model shaped like the ``postgresql`` type, parse the file and validate it. No
xresource code runs. ``bench_validate`` times it against ``check-jsonschema`` next to
``xresource validate``: what lies between this row and ours is xresource's own cost,
and this row against ``check-jsonschema`` is what pydantic costs by itself.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

# As `xresource validate` does: no scan of installed distributions for pydantic plugins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import yaml
from pydantic import BaseModel, ConfigDict, Field


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")
    type: Literal["postgresql"]
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    connect: Literal["eager", "lazy"] = "eager"
    connection_string: str
    min_pool_size: int = Field(default=1, ge=0)
    max_pool_size: int = Field(default=10, ge=1)
    command_timeout: float | None = None


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        Manifest.model_validate(yaml.safe_load(handle))
    print("valid")
