"""Smoke test of the ZooKeeper waiter-read trace
(conformance/benchmarks/zookeeper_read_trace.py): with a tiny N on a lab ZooKeeper every
variant reads what it claims -- the same 3 children, the marker absent (a NoNode inside
the multiRead) or present -- and each row's figures are real: as many timed calls as
asked, positive round trips, and no timing compared. ~3 s."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient

from tenure.conformance.benchmarks import zookeeper_read_trace as trace
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.zookeeper]


def test_every_variant_reads_the_listing_and_the_marker_it_claims(lab: LabFactory) -> None:
    cluster = lab.start("zookeeper", nodes=1)
    zk = KazooClient(hosts=cluster.nodes[0].client_address, timeout=10)
    zk.start(timeout=30)
    try:
        rows = trace.trace(zk, n=20, warmup=5)
        assert [r.name for r in rows] == [trace.GET_CHILDREN, trace.MULTI_LISTING,
                                          trace.MULTI_NORMAL, trace.MULTI_MARKER]
        assert all(r.calls == 20 and r.rtt_p90 >= r.rtt_median > 0 for r in rows), rows
        assert "| getChildren (kazoo Election) |" in trace.table(rows)
        # check() (run by trace) raises when a variant reads something else: break one.
        zk.delete(trace.MARKER)
        with pytest.raises(trace.TraceError, match="marker present"):
            trace.check(zk)
    finally:
        zk.stop()
        zk.close()


def test_too_few_calls_are_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        trace.main(["-n", "3"])
    assert "-n 3: give at least 10 calls" in capsys.readouterr().err
