"""The compose files: valid for Debian's docker-compose, one per backend and node count,
publishing the same client ports that `tenure lab up --fixed-ports` uses."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tenure.conformance.lab.cluster import LabError
from tenure.conformance.lab.compose import FIXED_PORTS, compose_cluster, compose_file

pytestmark = [pytest.mark.lab]

CASES = [(backend, nodes) for backend in FIXED_PORTS for nodes in (1, 3)]


@pytest.mark.parametrize(("backend", "nodes"), CASES)
def test_compose_file_is_valid_and_publishes_the_lab_ports(backend: str, nodes: int) -> None:
    path = compose_file(backend, nodes)
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose missing: run scripts/install-stores"
    check = subprocess.run([docker_compose, "-f", str(path), "config", "-q"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    config = subprocess.run([docker_compose, "-f", str(path), "config"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    names = [f"{backend}{i + 1}" for i in range(nodes)]
    for name, port in zip(names, FIXED_PORTS[backend][nodes], strict=True):
        assert f"  {name}:" in config
        assert f"127.0.0.1:{port}:" in config
    assert "healthcheck:" in config
    expected = f"{backend}://" + ",".join(f"127.0.0.1:{p}" for p in FIXED_PORTS[backend][nodes])
    assert expected in path.read_text(), "the file's header names the URL lab prints"


@pytest.mark.parametrize(("backend", "nodes"), CASES)
def test_docker_mode_cluster_has_the_compose_url_and_service_names(
    backend: str, nodes: int
) -> None:
    """--stores=docker builds clusters whose URL and node names are the compose file's
    (this machine has no Docker engine, so the cluster is built but not started)."""
    cluster = compose_cluster(backend, nodes)
    try:
        assert cluster.url in compose_file(backend, nodes).read_text()
        for node in cluster.nodes:
            assert f"  {node.name}:" in compose_file(backend, nodes).read_text()
        if nodes == 3:
            with pytest.raises(LabError, match="not offered"):
                cluster.isolate(1)
    finally:
        cluster.closed = True  # never started: nothing to bring down
        for proxy in cluster.proxies:
            proxy.close()
