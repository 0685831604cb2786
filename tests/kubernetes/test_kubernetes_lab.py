"""The Kubernetes lab: a real kube-apiserver over a lab etcd, its kubeconfig, and its
faults (apiserver kill/restart, the etcd under it killed, a proxy cut), and
`tenure lab up kubernetes` printing the kubeconfig."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.adapters.kubernetes_client import LeaseApi, parse_url
from tenure.config import parse_backend_url
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.kubernetes import KubernetesCluster
from tenure.errors import StoreUnavailable

pytestmark = [pytest.mark.kubernetes, pytest.mark.lab]


def api(url: str) -> LeaseApi:
    return LeaseApi(parse_url(parse_backend_url(url)[0]))


def lease(name: str) -> dict[str, object]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name}, "spec": {"holderIdentity": "lab-test"}}


def test_the_lab_serves_leases_and_survives_its_faults(lab: LabFactory) -> None:
    cluster = lab.start("kubernetes")
    assert isinstance(cluster, KubernetesCluster)
    leases = api(cluster.url)
    leases.create(lease("lab-probe"))
    assert leases.get("lab-probe") is not None

    cluster.apiserver.kill()
    with pytest.raises(StoreUnavailable):
        leases.get("lab-probe")
    cluster.apiserver.restart()
    assert leases.get("lab-probe") is not None  # kept in etcd

    cluster.kill_etcd()
    with pytest.raises(StoreUnavailable):
        leases.create(lease("lab-probe-2"))
    cluster.restart_etcd()
    assert leases.get("lab-probe") is not None

    proxy = cluster.proxy()
    through = api(proxy.url)
    assert through.get("lab-probe") is not None
    proxy.cut()
    with pytest.raises(StoreUnavailable):
        through.get("lab-probe")
    proxy.heal()
    assert through.get("lab-probe") is not None


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
