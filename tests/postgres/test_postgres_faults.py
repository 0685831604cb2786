"""Faults on the path to PostgreSQL, and PgBouncer in it: a leader cut off from the server
(connections refused or silently dropped) steps down by its own deadline; one run of the
properties through PgBouncer in transaction pooling, with LISTEN direct to the server
(fast handover) and without (the pooled listener is detected, logged and polled)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tenure
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.postgres import PostgresCluster
from tenure.conformance.suite import properties
from tenure.conformance.suite.backends import PROFILES, Target

pytestmark = [pytest.mark.postgres, pytest.mark.conformance]


@pytest.fixture
def cluster(lab: LabFactory) -> PostgresCluster:
    started = lab.start("postgres")
    assert isinstance(started, PostgresCluster)
    return started


@pytest.mark.parametrize("blackhole", [False, True], ids=["refused", "blackholed"])
def test_s4_a_leader_cut_from_the_server_steps_down_by_its_deadline(
    cluster: PostgresCluster, tmp_path: Path, blackhole: bool,
) -> None:
    target = Target(PROFILES["postgres"], cluster.url, cluster, tmp_path)
    outcome = properties.s4_cut_from_store(target, blackhole)
    print(outcome.name, outcome.measured)


def test_through_pgbouncer_in_transaction_mode_with_listen_direct_to_the_server(
    cluster: PostgresCluster, tmp_path: Path,
) -> None:
    bouncer = cluster.pgbouncer("transaction")
    server = cluster.nodes[0].client_address
    url = f"{bouncer.url}?listen={server}"
    target = Target(PROFILES["postgres"], url, cluster, tmp_path)
    turns = properties.s1_s2_turns(target)
    handover = properties.l1_resign_handover(target)
    print(turns.measured, handover.measured)
    # LISTEN went straight to the server, so handovers are notified, not polled.
    assert handover.measured["handover_median"] < 0.2, handover.measured


def test_through_pgbouncer_in_transaction_mode_a_pooled_listener_is_detected_and_polled(
    cluster: PostgresCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    bouncer = cluster.pgbouncer("transaction")
    with caplog.at_level(logging.WARNING, "tenure"), tenure.connect(
            bouncer.url, ttl=1) as a, tenure.connect(bouncer.url, ttl=1) as b:
        lead = a.election("pooled").campaign(timeout=10)
        observed = list(b.election("pooled").observe(timeout=0.5))
        assert observed and observed[0] is not None and observed[0].token == lead.token
        lead.resign()
        second = b.election("pooled").campaign(timeout=10)
        assert second.token > lead.token
        second.resign()
    assert "goes through a connection pooler" in caplog.text
    assert "listen=HOST:PORT" in caplog.text
    target = Target(PROFILES["postgres"], bouncer.url, cluster, tmp_path)
    properties.s3_paused_leader(target)  # the fence still holds through the pooler
