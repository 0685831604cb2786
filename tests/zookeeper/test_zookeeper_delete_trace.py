"""Smoke test of the ZooKeeper delete trace (conformance/benchmarks/zookeeper_delete_trace.py):
with a tiny N on a lab ZooKeeper every variant runs as many deletes as asked, every
waiter's watch fired (a wake that never came raises), the node with the leader's own
watch really carried it, removeWatches really takes it off (and only the leader's), and
the figures are real (positive). No timing compared."""

from __future__ import annotations

import threading

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoWatcherError

from tenure.conformance.benchmarks import zookeeper_delete_trace as trace
from tenure.conformance.lab.fixtures import LabFactory

pytestmark = [pytest.mark.zookeeper]


def test_every_variant_deletes_and_wakes_the_waiter(lab: LabFactory) -> None:
    cluster = lab.start("zookeeper", nodes=1)
    clients = [KazooClient(hosts=cluster.nodes[0].client_address, timeout=10)
               for _ in range(2)]
    for client in clients:
        client.start(timeout=30)
    try:
        rows = trace.trace(clients[0], clients[1], n=5, warmup=1)
        assert [r.name for r in rows] == [trace.NONE, trace.OWN, trace.REMOVED]
        assert all(r.deletes == 5 and r.delete_median > 0 and r.wake_median > 0
                   for r in rows), rows
        assert f"| {trace.OWN} |" in trace.table(rows)
        # The OWN variant's watch is the leader session's: the server tells it of the
        # delete (kazoo runs the callback), which the NONE variant never sets up.
        fired: list[str] = []
        done = threading.Event()
        path = clients[0].create(f"{trace.PARENT}/n-", b"", ephemeral=True, sequence=True)
        clients[0].exists(path, watch=lambda event: (fired.append(event.type), done.set()))
        clients[0].delete(path)
        assert done.wait(10) and fired == ["DELETED"]
        # REMOVED: the leader's watch is gone on the server (no event, kazoo's record
        # dropped) while the waiter's, another session's, still fires.
        path = clients[0].create(f"{trace.PARENT}/n-", b"", ephemeral=True, sequence=True)
        woken = threading.Event()
        clients[1].exists(path, watch=lambda event: woken.set())
        own: list[str] = []
        clients[0].exists(path, watch=lambda event: own.append(event.type))
        assert trace.remove_watches.send(clients[0], path).get(timeout=10) is True
        clients[0].delete(path)
        assert woken.wait(10)
        # kazoo's connection thread pops a path's callbacks when its event arrives, and
        # reads the socket in order: still there after the sync's answer = no event.
        clients[0].sync(trace.PARENT)
        assert path in clients[0]._data_watchers and own == []
        trace.remove_watches.forget_callbacks(clients[0], path)
        assert path not in clients[0]._data_watchers
        with pytest.raises(NoWatcherError):  # nothing left to remove
            trace.remove_watches.send(clients[0], path).get(timeout=10)
        assert clients[0].get_children(trace.PARENT) == []
    finally:
        for client in clients:
            client.stop()
            client.close()


def test_too_few_deletes_are_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        trace.main(["-n", "3"])
    assert "-n 3: give at least 10 deletes" in capsys.readouterr().err
