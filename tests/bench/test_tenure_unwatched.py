"""The handover trace's experiment tool ``tenure-unwatched``
(conformance/benchmarks/peers/tenure_unwatched.py): on ZooKeeper its leader really holds
no watch of its own node (the one safety step it switches off), a plain tenure leader
does, and on any other store it refuses by name."""

from __future__ import annotations

import pytest

from tenure.adapters.zookeeper import ZooKeeperStore
from tenure.conformance.benchmarks.peers import Unsupported, make_contender
from tenure.conformance.lab.fixtures import LabFactory


def _own_watches(tool: str, url: str) -> tuple[str, bool]:
    contender = make_contender(tool, url, f"unwatched-{tool}", 2.0, tool, lambda r, d: None)
    try:
        contender.campaign()
        store = contender.client.store  # type: ignore[attr-defined]
        assert isinstance(store, ZooKeeperStore)
        zk = store._conn.current
        assert zk is not None
        [node] = [k for k in store._watches.leading]
        return node, bool(zk._data_watchers.get(node))
    finally:
        contender.close()


@pytest.mark.zookeeper
def test_only_the_experiment_leads_without_its_own_node_watch(lab: LabFactory) -> None:
    url = lab.start("zookeeper", nodes=1).url
    assert _own_watches("tenure", url)[1] is True
    assert _own_watches("tenure-unwatched", url)[1] is False


@pytest.mark.sqlite
def test_it_refuses_other_stores(tmp_path: object) -> None:
    with pytest.raises(Unsupported, match="ZooKeeper experiment"):
        make_contender("tenure-unwatched", f"sqlite:///{tmp_path}/x.db", "e", 2.0, "a",
                       lambda r, d: None)
