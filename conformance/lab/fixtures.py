"""pytest plugin: real store clusters as fixtures (load with
``pytest_plugins = ["tenure.conformance.lab.fixtures"]``).

Fixtures:

* ``lab`` (function scope): ``lab.start("etcd", nodes=3)`` starts a cluster that is
  stopped when the test ends. Destructive tests use this.
* ``lab_module`` (module scope): the same, for clusters shared by one test module.
* ``lab_clusters`` (session scope): ``lab_clusters.get("redis", nodes=1)`` returns a
  cluster shared by every test of the session that asks for the same backend, node count
  and options; tests must leave it serving.
* ``etcd_cluster``, ``zookeeper_cluster``, ``consul_cluster``, ``redis_cluster``,
  ``kubernetes_cluster``: shared 1-node clusters (session scope).

When a test fails, the log tail of every cluster it used is added to its report. The
terminal summary lists every cluster's start time. ``--stores=docker`` starts the
clusters from ``compose/`` with docker compose instead of processes (needs a Docker
engine; see docs/lab.md). A store that cannot start fails the test (never a skip).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tenure.conformance.lab import start_cluster
from tenure.conformance.lab.cluster import Cluster

_clusters_key = pytest.StashKey[list[Cluster]]()
START_TIMES: list[tuple[str, int, float]] = []
"""(backend, nodes, seconds) of every cluster started in this session."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tenure lab")
    group.addoption(
        "--stores",
        choices=("process", "docker"),
        default="process",
        help="how lab fixtures run store servers: local processes (default) or the "
        "docker compose files in compose/ (needs a Docker engine)",
    )


def _start(config: pytest.Config, backend: str, nodes: int, **options: Any) -> Cluster:
    if config.getoption("--stores") == "docker":
        from tenure.conformance.lab.compose import start_compose_cluster

        cluster = start_compose_cluster(backend, nodes, **options)
    else:
        cluster = start_cluster(backend, nodes, **options)
    START_TIMES.append((backend, nodes, cluster.start_time))
    return cluster


def _attach(node: pytest.Item | pytest.Collector, cluster: Cluster) -> None:
    node.stash.setdefault(_clusters_key, []).append(cluster)


class LabFactory:
    """Starts clusters for one test and stops them when it ends."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.clusters: list[Cluster] = []

    def start(self, backend: str, nodes: int = 1, **options: Any) -> Cluster:
        cluster = _start(self._request.config, backend, nodes, **options)
        self.clusters.append(cluster)
        _attach(self._request.node, cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            cluster.close()


class SharedClusters:
    """Session-wide clusters keyed by backend, node count and options."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._clusters: dict[tuple[str, int, tuple[tuple[str, Any], ...]], Cluster] = {}

    def get(self, backend: str, nodes: int = 1, **options: Any) -> Cluster:
        key = (backend, nodes, tuple(sorted(options.items())))
        cluster = self._clusters.get(key)
        if cluster is None or cluster.closed:
            cluster = _start(self._config, backend, nodes, **options)
            self._clusters[key] = cluster
        return cluster

    def close(self) -> None:
        for cluster in self._clusters.values():
            cluster.close()


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    factory = LabFactory(request)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def lab_module(request: pytest.FixtureRequest) -> Iterator[LabFactory]:
    """Like ``lab``, for clusters shared by the tests of one module (stopped after it);
    their logs are shown when any test of the module fails."""
    factory = LabFactory(request)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def lab_clusters(pytestconfig: pytest.Config) -> Iterator[SharedClusters]:
    shared = SharedClusters(pytestconfig)
    try:
        yield shared
    finally:
        shared.close()


def _shared(backend: str, request: pytest.FixtureRequest, shared: SharedClusters) -> Cluster:
    cluster = shared.get(backend)
    _attach(request.node, cluster)
    return cluster


@pytest.fixture
def etcd_cluster(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> Cluster:
    return _shared("etcd", request, lab_clusters)


@pytest.fixture
def zookeeper_cluster(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> Cluster:
    return _shared("zookeeper", request, lab_clusters)


@pytest.fixture
def consul_cluster(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> Cluster:
    return _shared("consul", request, lab_clusters)


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> Cluster:
    return _shared("redis", request, lab_clusters)


@pytest.fixture
def kubernetes_cluster(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> Cluster:
    """A shared kube-apiserver over its own etcd (session scope)."""
    return _shared("kubernetes", request, lab_clusters)


def attach_cluster(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    """Shows ``cluster``'s logs if the requesting test fails (for clusters a test or a
    module fixture started by other means)."""
    _attach(request.node, cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        clusters = [c for node in item.listchain() for c in node.stash.get(_clusters_key, [])]
        for cluster in clusters:
            report.sections.append(
                (f"tenure lab logs: {cluster.backend} x{len(cluster.nodes)}", cluster.logs())
            )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not START_TIMES:
        return
    terminalreporter.section("tenure lab: cluster start times")
    for backend, nodes, seconds in START_TIMES:
        terminalreporter.write_line(f"{backend:<10} nodes={nodes}  {seconds:6.2f} s")


SQLITE_OR_REDIS = [pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
                   pytest.param("redis", marks=pytest.mark.redis, id="redis")]
"""Fixture params for tests that need one embedded and one networked store."""


def store_for(request: pytest.FixtureRequest, clusters: SharedClusters,
              tmp_path: Any) -> tuple[str, float]:
    """(backend URL, TTL) of ``request.param``'s store: a fresh SQLite file under
    ``tmp_path``, or the shared lab cluster (its logs attached to the test's report)."""
    from tenure.conformance.suite.backends import PROFILES

    name: str = request.param
    if name == "sqlite":
        return f"sqlite://{tmp_path}/store.db", PROFILES["sqlite"].ttl
    cluster = clusters.get(name)
    attach_cluster(request, cluster)
    return cluster.url, PROFILES[name].ttl
