"""The Kubernetes lab: a real kube-apiserver over a lab etcd, its kubeconfig, a proxy cut
between a client and it, and `tenure lab up kubernetes` printing the kubeconfig (the
kill/restart faults: test_kubernetes_store.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.adapters.kubernetes_client import LeaseApi, parse_url
from tenure.config import parse_backend_url
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.kubernetes import KubernetesCluster
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.kubernetes, pytest.mark.lab]


def api(url: str) -> LeaseApi:
    return LeaseApi(parse_url(parse_backend_url(url)[0]))


def lease(name: str) -> dict[str, object]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name}, "spec": {"holderIdentity": "lab-test"}}


def test_a_proxy_cut_between_a_client_and_the_apiserver_fails_requests_until_healed(
    kubernetes_cluster: Cluster,
) -> None:
    # The kill/restart faults (apiserver, the etcd under it) are checked, with elections,
    # by test_kubernetes_store.py::test_tokens_keep_rising_across_apiserver_and_etcd_restarts
    # on one fresh cluster; a proxy needs none.
    cluster = kubernetes_cluster
    assert isinstance(cluster, KubernetesCluster)
    name = f"lab-probe-{time.monotonic_ns()}"
    api(cluster.url).create(lease(name))
    proxy = cluster.proxy()
    through = api(proxy.url)
    assert through.get(name) is not None
    proxy.cut()
    with pytest.raises(StoreUnavailable):
        through.get(name)
    proxy.heal()
    assert through.get(name) is not None


def test_lab_up_kubernetes_prints_the_url_and_the_kubeconfig() -> None:
    name = f"k8s-cli-{time.monotonic_ns()}"
    up = subprocess.run([sys.executable, "-m", "tenure.cli.main", "lab", "up", "kubernetes",
                         "--detach", "--json", "--name", name],
                        capture_output=True, text=True, timeout=180, check=False)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert info["url"].startswith("kubernetes://default?kubeconfig=")
        config = json.loads(Path(info["kubeconfig"]).read_text())
        assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        assert api(info["url"]).get("nothing-here") is None  # authenticated, TLS verified
    finally:
        subprocess.run([sys.executable, "-m", "tenure.cli.main", "lab", "down", name],
                       capture_output=True, timeout=60, check=False)
