"""The Kubernetes mapping against a real kube-apiserver (over a lab etcd): Lease names and
annotations as documented, tokens that keep rising across apiserver and etcd restarts,
renewal traffic flat in the number of elections (and what layout=native costs), and a
session someone deleted is never revived."""

from __future__ import annotations

import contextlib
import re
import ssl
import time
import urllib.request
from collections.abc import Callable

import pytest

import tenure
from tenure.adapters.kubernetes import KubernetesStore, lease_name
from tenure.adapters.kubernetes_client import LeaseApi, parse_url
from tenure.config import parse_backend_url
from tenure.conformance.lab.fixtures import LabFactory, SharedClusters, attach_cluster
from tenure.conformance.lab.kubernetes import KubernetesCluster

pytestmark = [pytest.mark.kubernetes]


@pytest.fixture
def kube(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> KubernetesCluster:
    cluster = lab_clusters.get("kubernetes")
    attach_cluster(request, cluster)
    assert isinstance(cluster, KubernetesCluster)
    return cluster


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def store_api(url: str) -> LeaseApi:
    """A bare Lease client for ``url`` (no session, no retries)."""
    return LeaseApi(parse_url(parse_backend_url(url)[0]))


def store_of(client: tenure.Client) -> KubernetesStore:
    store = client.store
    assert isinstance(store, KubernetesStore)
    return store


def test_an_election_is_one_lease_named_within_kubernetes_rules(kube: KubernetesCluster) -> None:
    election = f"Jobs/Nightly_Report/{time.monotonic_ns()}"
    with tenure.connect(kube.url, ttl=2, candidate_id="worker-1") as client:
        lead = client.election(election).campaign(value=b"10.0.0.7", timeout=20)
        lease = store_of(client).api.get(lease_name(election))
        assert lease is not None
        assert re.fullmatch(r"jobs-nightly-report-[0-9]+-[0-9a-f]{10}", lease_name(election))
        notes = lease["metadata"]["annotations"]
        assert notes["tenure.dev/election"] == election
        assert lease["spec"]["holderIdentity"] == "worker-1"
        assert lease["spec"]["leaseTransitions"] == lead.token == int(notes["tenure.dev/token"])
        assert notes["tenure.dev/session"].startswith("tenure-session-")
        lead.resign()
        lease = store_of(client).api.get(lease_name(election))
        assert lease is not None and lease["spec"]["holderIdentity"] == ""


def test_tokens_keep_rising_across_apiserver_and_etcd_restarts(lab: LabFactory) -> None:
    """The lab's kill/restart faults (one fresh cluster for all of them): with the
    apiserver or the etcd under it down, requests fail with StoreUnavailable and a
    leader holding steps down; the Lease is kept, and every new leadership after each
    restart takes a larger token."""
    cluster = lab.start("kubernetes")
    assert isinstance(cluster, KubernetesCluster)
    election = "restarts"
    leases = store_api(cluster.url)
    tokens = []

    def lead_once() -> None:
        def attempt() -> int:
            with tenure.connect(cluster.url, ttl=2) as client:
                lead = client.election(election).campaign(timeout=20)
                token = lead.token
                lead.resign()
                return token
        end = time.monotonic() + 60
        while True:  # the apiserver answers 5xx for a moment after etcd came back
            try:
                tokens.append(attempt())
                return
            except tenure.StoreUnavailable:
                assert time.monotonic() < end
                time.sleep(0.5)

    lead_once()
    lead_once()  # the same election, a new leadership: a new token
    cluster.apiserver.kill()
    with pytest.raises(tenure.StoreUnavailable):
        leases.get(lease_name(election))
    cluster.apiserver.restart()
    assert leases.get(lease_name(election)) is not None  # kept in etcd
    lead_once()
    # The etcd under the apiserver killed under a leader: requests fail, its renewals
    # too, so it steps down by its deadline instead of leading on blind; after etcd is
    # back a new leadership takes a larger token.
    with tenure.connect(cluster.url, ttl=2) as client:
        held = client.election(election).campaign(timeout=20)
        tokens.append(held.token)
        cluster.kill_etcd()
        with pytest.raises(tenure.StoreUnavailable):
            leases.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": "probe"}, "spec": {"holderIdentity": "t"}})
        assert held.wait_lost(timeout=30), "a leader must step down with etcd gone"
        cluster.restart_etcd()
    lead_once()
    assert tokens == sorted(set(tokens)) and len(tokens) == 5, tokens


def _lease_updates(cluster: KubernetesCluster) -> int:
    """The apiserver's own count of Lease update requests (its /metrics)."""
    context = ssl.create_default_context(cafile=str(cluster.apiserver.ca_file))
    request = urllib.request.Request(
        f"https://{cluster.apiserver.client_address}/metrics",
        headers={"Authorization": f"Bearer {cluster.token}"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        text = response.read().decode()
    total = 0
    for line in text.splitlines():
        if (line.startswith("apiserver_request_total{") and 'resource="leases"' in line
                and 'verb="PUT"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_renewal_traffic_is_flat_in_the_number_of_elections(kube: KubernetesCluster) -> None:
    # TTL 6: renewal requests are bounded by TTL/4, and this host may be loaded. The four
    # clients (two layouts, 1 and 10 elections) are measured over ONE window at once.
    ttl, window = 6, 6.0
    configs = [(layout, elections) for layout in ("tenure", "native") for elections in (1, 10)]
    figures: dict[tuple[str, int], int] = {}
    with contextlib.ExitStack() as stack:
        clients, held = {}, []
        for layout, elections in configs:
            url = kube.url + ("&layout=native" if layout == "native" else "")
            client = clients[(layout, elections)] = stack.enter_context(
                tenure.connect(url, ttl=ttl))
            held += [client.election(f"traffic/{layout}/{elections}/{i}").campaign(timeout=20)
                     for i in range(elections)]
        sent = {config: store_of(client).api.requests for config, client in clients.items()}
        updates = _lease_updates(kube)
        time.sleep(window)  # measuring a rate over a fixed window
        for config, client in clients.items():
            figures[config] = store_of(client).api.requests - sent[config]
        counted = _lease_updates(kube) - updates
        for lead in held:
            assert not lead.lost
            lead.resign()
    print("requests in", window, "s at TTL", ttl, figures, "; Lease updates the apiserver "
          "counted meanwhile", counted)
    renewals = window / (ttl / 3)
    for elections in (1, 10):
        assert abs(figures[("tenure", elections)] - renewals) <= 1.5, figures
    # Every request the clients sent in the window is a Lease update; the server counted
    # no more (other clients of the shared lab may write a few).
    assert counted <= sum(figures.values()) + 3, (figures, counted)
    assert figures[("tenure", 10)] <= figures[("tenure", 1)] + 1
    assert figures[("native", 10)] >= 4 * figures[("native", 1)], figures


def test_a_deleted_session_is_never_revived(kube: KubernetesCluster) -> None:
    election = f"revive/{time.monotonic_ns()}"
    with tenure.connect(kube.url, ttl=2) as client:
        lead = client.election(election).campaign(timeout=20)
        store = store_of(client)
        session = store._session_name
        assert session is not None
        store.api.delete(session, None)
        assert lead.wait_lost(timeout=10), "a renewal must find the session gone"
        assert store.api.get(session) is None
