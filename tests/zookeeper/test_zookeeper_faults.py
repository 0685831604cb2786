"""ZooKeeper under faults and against other clients: a killed store node the client
was talking to, digest ACLs, and observers across a disconnect."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

import tenure
from tenure.conformance.lab.cluster import Cluster, wait_until
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.zookeeper import ZooKeeperNode, four_letter

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow, pytest.mark.chaos]


def connections(node: ZooKeeperNode) -> int:
    """Client connections a server holds, not counting the one asking."""
    answer = four_letter(("127.0.0.1", node.client_port), "mntr")
    counters = dict(line.split("\t", 1) for line in answer.splitlines() if "\t" in line)
    return int(counters["zk_num_alive_connections"]) - 1


def test_killing_the_node_the_client_talks_to_keeps_leadership(lab: LabFactory) -> None:
    cluster = lab.start("zookeeper", nodes=3)
    followers = [n for n in cluster.nodes if isinstance(n, ZooKeeperNode)
                 and n.mode() == "follower"]
    # Only the followers in the URL: killing one needs no ZooKeeper leader election.
    url = "zookeeper://" + ",".join(n.client_address for n in followers)
    ttl = 4.0
    lost: list[str] = []
    with tenure.connect(url, ttl=ttl) as client, tenure.connect(cluster.url, ttl=ttl) as other:
        lead = client.election("zk/node-kill").campaign(
            timeout=30, on_lost=lambda _lead, reason: lost.append(reason))
        connected = [n for n in followers if connections(n) == 1]
        assert len(connected) == 1, [connections(n) for n in followers]
        renewals = client.keeper.renewals
        connected[0].kill()
        # The client reconnects to the other follower with the same session, well
        # within the TTL, and renews on it.
        wait_until(lambda: client.keeper.renewals >= renewals + 3, 3 * ttl, "renewals")
        assert not lead.lost and lost == []
        lead.ensure()
        lead.guarded_write("zk/node-kill/data", b"still-leader")
        info = other.election("zk/node-kill").leader()
        assert info is not None and info.token == lead.token
        assert other.read("zk/node-kill/data") == b"still-leader"
        lead.resign()


def test_clients_without_the_digest_credentials_cannot_touch_a_leaders_node(
    zookeeper_cluster: Cluster, tmp_path: Path,
) -> None:
    secret = tmp_path / "zk.pw"
    secret.write_text("alice-secret\n")
    prefix = f"/acl-{uuid.uuid4().hex[:8]}"
    url = f"{zookeeper_cluster.url}?prefix={prefix}&digest_user=alice&digest_password_file={secret}"
    with tenure.connect(url, ttl=2) as alice, tenure.connect(url, ttl=2) as colleague:
        lead = alice.election("guarded").campaign(timeout=10)
        stranger = KazooClient(hosts=zookeeper_cluster.url.removeprefix("zookeeper://"))
        stranger.start(timeout=10)
        try:
            for action in (lambda: stranger.delete(lead.ticket.key),
                           lambda: stranger.get(lead.ticket.key),
                           lambda: stranger.delete(lead.ticket.key.rsplit("/", 1)[0],
                                                   recursive=True)):
                with pytest.raises(NoAuthError):
                    action()
        finally:
            stranger.stop()
            stranger.close()
        anonymous = tenure.connect(f"{zookeeper_cluster.url}?prefix={prefix}", ttl=2)
        with anonymous, pytest.raises(tenure.ConfigError, match="digest credentials"):
            anonymous.election("guarded").campaign(timeout=5)
        lead.ensure()
        info = colleague.election("guarded").leader()  # same credentials: allowed
        assert info is not None and info.token == lead.token
        lead.resign()


def test_observers_see_every_leader_in_token_order_and_the_latest_after_a_cut(
    zookeeper_cluster: Cluster,
) -> None:
    name = f"zk/observe/{uuid.uuid4().hex[:8]}"
    proxy = zookeeper_cluster.proxy()
    seen: list[tenure.LeaderInfo | None] = []
    changed = threading.Condition()

    def record(info: tenure.LeaderInfo | None) -> None:
        with changed:
            seen.append(info)
            changed.notify_all()

    def wait_seen(token: int) -> None:
        with changed:
            assert changed.wait_for(
                lambda: bool(seen) and seen[-1] is not None and seen[-1].token == token, 20
            ), seen

    with tenure.connect(proxy.url, ttl=2) as watcher, \
            tenure.connect(zookeeper_cluster.url, ttl=2) as a, \
            tenure.connect(zookeeper_cluster.url, ttl=2) as b:
        observer = watcher.election(name).on_change(record)
        try:
            tokens = []
            for client in (a, b, a, b):
                lead = client.election(name).campaign(timeout=10)
                tokens.append(lead.token)
                wait_seen(lead.token)
                lead.resign()
            # While the observer is cut off, leaders come and go; after it reconnects
            # it re-reads and reports the latest one (ZooKeeper would not replay them).
            proxy.cut()
            for client in (a, b):
                client.election(name).campaign(timeout=10).resign()
            latest = a.election(name).campaign(timeout=10, value=b"latest")
            time.sleep(0.5)  # keep the cut while the changes happen (not a synchronisation)
            proxy.heal()
            wait_seen(latest.token)
            assert seen[-1] is not None and seen[-1].value == b"latest"
            latest.resign()
        finally:
            observer.stop()
            proxy.close()
    observed = [info.token for info in seen if info is not None]
    assert observed == sorted(observed)
    assert set(tokens) <= set(observed)


def test_a_campaign_waiting_on_a_silent_store_still_obeys_cancel(
    zookeeper_cluster: Cluster,
) -> None:
    name = f"zk/cancel/{uuid.uuid4().hex[:8]}"
    proxy = zookeeper_cluster.proxy()
    ttl = 2.0
    with tenure.connect(zookeeper_cluster.url, ttl=ttl) as a, \
            tenure.connect(proxy.url, ttl=ttl) as b:
        lead = a.election(name).campaign(timeout=10)
        cancel = threading.Event()
        outcome: list[BaseException] = []

        def campaign() -> None:
            try:
                b.election(name).campaign(cancel=cancel)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=campaign)
        thread.start()
        watches = b.store._watches  # type: ignore[attr-defined]
        wait_until(lambda: len(watches.leading) == 0 and a.election(name).leader() is not None
                   and b.keeper.renewals >= 1, 10, "b queued")
        proxy.cut(blackhole=True)  # b's calls now hang: no answer, no error
        cancelled_at = time.monotonic()
        cancel.set()
        thread.join(timeout=ttl + 5)
        # The campaign gives up within a wait slice; the core then tries to withdraw
        # (bounded by the TTL), and the entry dies with b's session anyway.
        assert not thread.is_alive()
        assert time.monotonic() - cancelled_at < ttl + 1.5
        assert isinstance(outcome[0], tenure.CampaignCancelled)
        proxy.heal()
        lead.resign()
    proxy.close()


def test_after_its_session_expired_a_client_campaigns_again_on_a_new_session(
    zookeeper_cluster: Cluster,
) -> None:
    name = f"zk/expired/{uuid.uuid4().hex[:8]}"
    proxy = zookeeper_cluster.proxy()
    ttl = 2.0
    lost: list[str] = []
    with tenure.connect(proxy.url, ttl=ttl) as client, \
            tenure.connect(zookeeper_cluster.url, ttl=ttl) as other:
        lead = client.election(name).campaign(
            timeout=10, on_lost=lambda _lead, reason: lost.append(reason))
        session = client.store._session_id  # type: ignore[attr-defined]
        proxy.cut()
        # Cut for longer than the session timeout: the server expires the session, the
        # leadership ends by its deadline, and another client takes over.
        successor = other.election(name).campaign(timeout=4 * ttl)
        assert lead.lost and lost
        proxy.heal()
        # kazoo reconnects, learns the session expired and starts a new one; the next
        # campaign opens this client's session again and queues behind the successor.
        successor.resign()
        again = client.election(name).campaign(timeout=5 * ttl)
        assert client.store._session_id != session  # type: ignore[attr-defined]
        assert again.token > successor.token > lead.token
        again.guarded_write(f"{name}/data", b"new-session")
        assert other.read(f"{name}/data") == b"new-session"
        again.resign()
    proxy.close()
