"""The reliability suite shares the registry tests' fixtures (manifests folder, data, REST server)."""

from tests.registry.conftest import api, data, manifests

__all__ = ["api", "data", "manifests"]
