"""Backends for the gateway tests: SQLite and a real store (Redis, a shared 1-node lab
cluster). A store that cannot start fails the test; nothing is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.conformance.lab.fixtures import SharedClusters, store_for

BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, lab_clusters: SharedClusters,
          tmp_path: Path) -> tuple[str, float]:
    """(backend URL, TTL) of a store for one gateway test."""
    return store_for(request, lab_clusters, tmp_path)
