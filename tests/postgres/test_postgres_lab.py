"""The PostgreSQL lab: Debian's server run as the unprivileged user on a free port, a
crash keeps committed data, a paused server answers nothing, and with two nodes every
commit waits for the synchronous standby, which can be promoted."""

from __future__ import annotations

import os
import subprocess

import pytest

from tenure.conformance.lab.cluster import LabError
from tenure.conformance.lab.fixtures import LabFactory
from tenure.conformance.lab.postgres import PostgresCluster

pytestmark = [pytest.mark.lab, pytest.mark.postgres]


def owner(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def test_a_single_server_runs_unprivileged_and_keeps_commits_across_a_crash(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres")
    assert isinstance(cluster, PostgresCluster)
    node = cluster.nodes[0]
    assert cluster.url == f"postgresql://tenure@{node.client_address}/postgres"
    assert node.pid is not None
    if os.geteuid() == 0:
        assert owner(node.pid) != 0, "the server must not run as root"
    node.psql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
    node.kill()  # SIGKILL: crash recovery from the WAL on restart
    node.restart()
    assert node.psql("SELECT v FROM kept") == "7"
    node.pause()
    try:
        with pytest.raises((LabError, subprocess.TimeoutExpired)):
            node.psql("SELECT 1", timeout=1.5)
    finally:
        node.resume()
    assert node.psql("SELECT 1") == "1"


def test_two_nodes_commit_synchronously_and_the_standby_can_be_promoted(
    lab: LabFactory,
) -> None:
    cluster = lab.start("postgres", nodes=2)
    assert isinstance(cluster, PostgresCluster)
    primary, standby = cluster.nodes
    assert primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync"
    assert standby.in_recovery()
    primary.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    assert standby.psql("SELECT v FROM t") == "1"  # acknowledged => on the standby
    standby.kill()
    # No synchronous standby: the commit waits (here until psql gives up).
    with pytest.raises(subprocess.TimeoutExpired):
        primary.psql("INSERT INTO t VALUES (2)", timeout=2)
    standby.restart()
    cluster.wait_serving()
    cluster.promote(1)
    assert cluster.primary is standby and not standby.in_recovery()
    standby.psql("INSERT INTO t VALUES (3)")  # the promoted standby takes writes alone
    assert standby.psql("SELECT count(*) FROM t WHERE v IN (1, 3)") == "2"
    with pytest.raises(LabError, match="second primary"):
        primary.restart()


def test_node_counts_other_than_one_or_two_are_refused() -> None:
    with pytest.raises(ValueError, match="nodes must be 1 or 2"):
        PostgresCluster(3)
