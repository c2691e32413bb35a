"""Fixtures of the server tests: the same folders and REST server as the registry tests."""

from tests.registry.conftest import api, data, manifests

__all__ = ["api", "data", "manifests"]
