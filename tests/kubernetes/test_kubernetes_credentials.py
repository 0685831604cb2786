"""Credentials against a real kube-apiserver: the in-cluster service-account path (token
and CA files, KUBERNETES_SERVICE_HOST/PORT, the pod's namespace file) when no kubeconfig
exists, and a user RBAC grants nothing getting a ConfigError that names the rule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes.config import incluster_config

import tenure
from tenure.adapters import kubernetes_client
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.kubernetes import KubernetesCluster
from tenure.errors import ConfigError

pytestmark = [pytest.mark.kubernetes]


def _lab(cluster: Cluster) -> KubernetesCluster:
    assert isinstance(cluster, KubernetesCluster)
    return cluster


def test_in_a_pod_the_service_account_is_used(
    kubernetes_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = _lab(kubernetes_cluster)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(cluster.token)
    (account / "ca.crt").write_bytes(cluster.apiserver.ca_file.read_bytes())
    (account / "namespace").write_text("default")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setattr(kubernetes_client, "SERVICE_ACCOUNT_DIR", account)
    host, port = cluster.apiserver.client_address.split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with tenure.connect("kubernetes://", ttl=2) as client:
        assert "kubernetes://default at https://127.0.0.1:" in client.backend
        lead = client.election(f"in-cluster/{time.monotonic_ns()}").campaign(timeout=20)
        assert lead.token >= 1
        lead.resign()


def test_no_kubeconfig_outside_a_pod_says_what_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"does not exist and this is not a pod.*kubeconfig="):
        tenure.connect("kubernetes://jobs", ttl=2)


def test_a_user_without_lease_rights_gets_a_config_error_naming_the_rule(
    kubernetes_cluster: Cluster, tmp_path: Path,
) -> None:
    cluster = _lab(kubernetes_cluster)
    path = tmp_path / "nobody.json"
    cluster.write_kubeconfig(path, f"https://{cluster.apiserver.client_address}",
                             token=cluster.unprivileged_token)
    rule = r"refused \(403.*leases.coordination.k8s.io"
    with tenure.connect(f"kubernetes://default?kubeconfig={path}", ttl=2) as client, \
            pytest.raises(ConfigError, match=rule) as caught:
        client.election("refused").campaign(timeout=5)
    assert cluster.unprivileged_token not in str(caught.value)
