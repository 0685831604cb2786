"""The PostgreSQL mapping against a real server: tokens never go back across a crash and
restart or a promotion of the synchronous standby; without a synchronous standby nobody
is elected and the leader steps down; the server's clock judges expiry and a session it
judged dead is never renewed; one renewal statement per TTL/3 however many elections a
client holds; reads before any campaign create nothing; ``tenure postgres init``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

import tenure
from tenure.adapters.postgres import PostgresStore
from tenure.conformance.lab.cluster import Cluster
from tenure.conformance.lab.fixtures import LabFactory, SharedClusters, attach_cluster
from tenure.conformance.lab.postgres import PostgresCluster, PostgresNode

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def pg(request: pytest.FixtureRequest, lab_clusters: SharedClusters) -> PostgresCluster:
    cluster = lab_clusters.get("postgres")
    attach_cluster(request, cluster)
    assert isinstance(cluster, PostgresCluster)
    return cluster


def nodes(cluster: Cluster) -> list[PostgresNode]:
    assert isinstance(cluster, PostgresCluster)
    return cluster.nodes


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        tick.wait(0.02)


def test_the_next_token_is_larger_after_the_server_is_killed_and_restarted(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres")
    node = nodes(cluster)[0]
    with tenure.connect(cluster.url, ttl=2) as client:
        lead = client.election("restart").campaign(timeout=10)
        first = lead.token
        lead.resign()
    node.kill()  # SIGKILL: the identity sequence comes back from the WAL
    node.restart()
    with tenure.connect(cluster.url, ttl=2) as client:
        lead = client.election("restart").campaign(timeout=30)
        assert lead.token > first
        lead.resign()


def test_tokens_keep_rising_when_the_synchronous_standby_is_promoted(lab: LabFactory) -> None:
    cluster = lab.start("postgres", nodes=2)
    assert isinstance(cluster, PostgresCluster)
    name = "failover"
    with tenure.connect(cluster.url, ttl=10) as a, tenure.connect(cluster.url, ttl=10) as b:
        tokens = []
        for _ in range(3):  # draw a few identity values on the old primary
            lead = a.election(name).campaign(timeout=10)
            tokens.append(lead.token)
            lead.resign()
        lead = a.election(name).campaign(timeout=10)
        tokens.append(lead.token)
        lead.guarded_write("failover/key", b"before")
        cluster.promote(1)  # kills the primary; the standby has every acknowledged commit
        # The leader's session, row and token carried over: it keeps leading and writing
        # on the new primary, and a newcomer waits behind it.
        wait(lambda: _writes(lead, b"after"), 20, "the leader to write on the new primary")
        assert not lead.lost
        with pytest.raises(tenure.CampaignTimeout):
            b.election(name).campaign(timeout=1)
        assert b.election(name).leader() == tenure.LeaderInfo(
            name, lead.candidate_id, b"", lead.token)
        lead.resign()
        successor = b.election(name).campaign(timeout=10)
        assert successor.token > max(tokens), (successor.token, tokens)
        assert b.store.read("failover/key") == b"after"
        successor.resign()


def _writes(lead: tenure.Leadership, value: bytes) -> bool:
    try:
        lead.guarded_write("failover/key", value)
    except tenure.StoreUnavailable:
        return False
    return True


def test_without_the_synchronous_standby_nobody_is_elected_and_the_leader_steps_down(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres", nodes=2)
    standby = nodes(cluster)[1]
    ttl = 1.5
    with tenure.connect(cluster.url, ttl=ttl) as a, tenure.connect(cluster.url, ttl=ttl) as b:
        lead = a.election("no-standby").campaign(timeout=10)
        won: list[tenure.Leadership] = []
        waiter = threading.Thread(target=lambda: won.append(
            b.election("no-standby").campaign(timeout=60)))
        waiter.start()
        wait(lambda: len(b.election("no-standby").contenders()) == 2, 10, "the waiter")
        standby.kill()  # commits now wait for a standby that is gone
        killed_at = time.monotonic()
        assert lead.wait_lost(timeout=ttl + 2), "the leader must step down by its deadline"
        assert time.monotonic() - killed_at <= ttl + 0.5
        quiet = threading.Event()
        quiet.wait(2 * ttl)  # a window in which nobody may be elected
        assert won == [], "elected while no commit could reach the standby"
        standby.restart()
        waiter.join(timeout=60)
        assert won and won[0].token > lead.token
        won[0].resign()


def test_the_server_judges_expiry_and_never_renews_a_session_it_judged_dead(
    pg: PostgresCluster,
) -> None:
    node = pg.nodes[0]
    with tenure.connect(pg.url, ttl=3) as a, tenure.connect(pg.url, ttl=3) as b:
        lead = a.election("expiry").campaign(timeout=10)
        left = float(node.psql(
            "SELECT extract(epoch FROM s.expires_at - clock_timestamp()) FROM "
            f"tenure.sessions s JOIN tenure.candidates c ON c.session_id = s.id "
            f"WHERE c.seq = {lead.token}"))
        assert 0 < left <= 3.0  # renewed to clock_timestamp() + ttl on the server
        won: list[tenure.Leadership] = []
        waiter = threading.Thread(target=lambda: won.append(
            b.election("expiry").campaign(timeout=30)))
        waiter.start()
        wait(lambda: len(b.election("expiry").contenders()) == 2, 10, "the waiter")
        # The server's clock says the leader's session is over (as if its TTL had passed
        # without a renewal): the waiter takes over at its next step, and the leader's
        # next renewal finds the session gone -- it is not revived.
        node.psql("UPDATE tenure.sessions SET expires_at = clock_timestamp() - interval '1 s' "
                  f"WHERE id = (SELECT session_id FROM tenure.candidates WHERE seq = "
                  f"{lead.token})")
        waiter.join(timeout=30)
        assert won and won[0].token > lead.token
        assert lead.wait_lost(timeout=5)
        assert "ended this client's session" in lead.lost_reason
        won[0].resign()


def test_a_row_deleted_by_an_operator_is_reported_lost_at_the_next_renewal(
    pg: PostgresCluster,
) -> None:
    with tenure.connect(pg.url, ttl=1.5) as client:
        lead = client.election("operator").campaign(timeout=10)
        pg.nodes[0].psql(f"DELETE FROM tenure.candidates WHERE seq = {lead.token}")
        assert lead.wait_lost(timeout=3)
        assert "row was deleted" in lead.lost_reason


def _statements(node: PostgresNode) -> tuple[int, int]:
    """(renewal statements, every statement on tenure's tables) since the last reset, in
    one snapshot."""
    row = node.psql(
        "SELECT coalesce(sum(calls) FILTER (WHERE query LIKE '%UPDATE \"tenure\".sessions "
        "SET expires_at%'), 0), coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query LIKE '%\"tenure\".%' AND query NOT LIKE '%pg_stat_statements%'")
    renewals, everything = row.split("|")
    return int(renewals), int(everything)


def _renewed(store: PostgresStore, count: int) -> Callable[[], bool]:
    return lambda: store.renewals >= count


def test_one_renewal_statement_per_ttl_third_whatever_the_number_of_elections(
    pg: PostgresCluster,
) -> None:
    """Counted, not timed: the adapter's renewals are bracketed by reads of its counter
    around the server's reset and snapshot (a fixed window at TTL 1.5 s missed renewals
    that load delayed). A keeper never renews more often than every TTL/3 (it schedules
    the next renewal from the last one), so the upper bound holds under any load."""
    node = pg.nodes[0]
    node.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    ttl, renewals_wanted = 3.0, 3
    interval = ttl / 3
    counts = {}
    for elections in (1, 50):
        with tenure.connect(pg.url, ttl=ttl) as client:
            held = [client.election(f"renewals/{elections}/{i}").campaign(timeout=10)
                    for i in range(elections)]
            store = client.store
            assert isinstance(store, PostgresStore)
            started, before_reset = time.monotonic(), store.renewals
            node.psql("SELECT pg_stat_statements_reset()")
            after_reset = store.renewals
            wait(_renewed(store, after_reset + renewals_wanted),
                 10 * renewals_wanted * interval, f"{renewals_wanted} renewals")
            before_snapshot = store.renewals
            renewals, everything = _statements(node)
            after_snapshot, elapsed = store.renewals, time.monotonic() - started
            counts[elections] = (renewals, everything)
            # The adapter's count is the server's: each renewal is ONE statement (the
            # one counted before the snapshot may still be in flight).
            assert before_snapshot - after_reset - 1 <= renewals, (elections, counts)
            assert renewals <= after_snapshot - before_reset, (elections, counts)
            assert renewals <= elapsed / interval + 1, (elections, elapsed, counts)
            assert everything == renewals, "an idle leader sends nothing but its renewals"
            for lead in held:
                assert not lead.lost
                lead.resign()


def test_reads_before_any_campaign_see_an_empty_store_and_create_nothing(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres")
    url = cluster.url + "?schema=untouched"
    with tenure.connect(url, ttl=1) as client:
        election = client.election("nothing")
        assert election.leader() is None
        assert election.contenders() == []
        assert client.store.read("k") is None
    node = nodes(cluster)[0]
    assert node.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'untouched'") == "0"


def test_postgres_init_creates_the_schema_once_and_grants_a_user_without_ddl_rights(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres")
    node = nodes(cluster)[0]
    url = cluster.url + "?schema=app"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tenure", "postgres", "init", *args],
                              capture_output=True, text=True, timeout=60)

    printed = cli("--backend", url, "--print-sql", "--grant", "app_user")
    assert printed.returncode == 0, printed.stderr
    assert 'CREATE TABLE IF NOT EXISTS "app".candidates' in printed.stdout
    assert 'GRANT USAGE ON SCHEMA "app" TO "app_user"' in printed.stdout
    assert node.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == "0"
    node.psql("CREATE ROLE app_user LOGIN")
    for _ in range(2):  # idempotent
        done = cli("--backend", url, "--grant", "app_user")
        assert done.returncode == 0, done.stderr
        assert "is ready (tenure schema version 1" in done.stdout
    assert node.psql("SELECT max(version) FROM app.schema_version") == "1"
    as_user = url.replace("tenure@", "app_user@")
    with tenure.connect(as_user, ttl=1) as client:
        lead = client.election("granted").campaign(timeout=10)
        lead.guarded_write("granted", b"yes")
        assert client.store.read("granted") == b"yes"
        lead.resign()
    elsewhere = as_user.replace("schema=app", "schema=forbidden")
    with tenure.connect(elsewhere, ttl=1) as client, pytest.raises(tenure.ConfigError) as err:
        client.election("denied").campaign(timeout=10)
    assert "permission denied" in str(err.value) and "tenure postgres init" in str(err.value)
    wrong = cli("--backend", "redis://127.0.0.1:1")
    assert wrong.returncode == 2 and "needs a postgresql:// backend URL" in wrong.stderr
