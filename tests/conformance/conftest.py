"""Parametrizes the conformance tests over every implemented backend.

A test asking for ``target`` runs once per backend (SQLite and every store whose adapter
exists, on a shared 1-node lab cluster); ``unordered_target`` likewise, on the backends
whose stores keep no arrival order only; ``cluster_target`` runs on a fresh 3-node cluster
of each clustered backend (destructive tests). Each run carries the backend's marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenure.conformance.lab.fixtures import LabFactory, SharedClusters, attach_cluster
from tenure.conformance.suite.backends import PROFILES, Target, clustered, implemented, unordered


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:  # also through unordered_target
        backends = unordered() if "unordered_target" in metafunc.fixturenames else implemented()
        metafunc.parametrize(
            "backend_name",
            [pytest.param(b, marks=getattr(pytest.mark, b), id=b) for b in backends],
        )
    if "cluster_target" in metafunc.fixturenames:
        metafunc.parametrize(
            "cluster_backend",
            [pytest.param(b, marks=[getattr(pytest.mark, b), pytest.mark.slow], id=f"{b}x3")
             for b in clustered()],
        )


@pytest.fixture
def target(
    backend_name: str, request: pytest.FixtureRequest, lab_clusters: SharedClusters,
    tmp_path: Path,
) -> Target:
    profile = PROFILES[backend_name]
    if backend_name == "sqlite":
        return Target(profile, f"sqlite://{tmp_path}/store.db", None, tmp_path)
    cluster = lab_clusters.get(backend_name)
    attach_cluster(request, cluster)
    return Target(profile, cluster.url, cluster, tmp_path)


@pytest.fixture
def cluster_target(cluster_backend: str, lab: LabFactory, tmp_path: Path) -> Iterator[Target]:
    cluster = lab.start(cluster_backend, nodes=3)
    yield Target(PROFILES[cluster_backend], cluster.url, cluster, tmp_path)


@pytest.fixture
def unordered_target(target: Target) -> Target:
    """:func:`target`, parametrized over the stores without arrival order only."""
    return target
