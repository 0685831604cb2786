"""Smoke test of the Consul transaction trace (conformance/benchmarks/consul_txn_trace.py):
with a tiny N on a lab Consul every request shape runs as many samples as asked, each
refused sample would raise (so every one committed), the figures are real (positive),
the shapes named tenure's send exactly the operations the adapter sends in a handover,
and their checks are real (Consul refuses the lock while the entry ahead is there). No
timing compared."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tenure.adapters.consul import ConsulStore
from tenure.config import parse_backend_url
from tenure.conformance.benchmarks import consul_txn_trace as trace
from tenure.conformance.lab.cluster import Cluster
from tenure.handoff import marker_key
from tenure.store import Wait, Won

pytestmark = [pytest.mark.consul]

TENURE_LOCK = "txn: the same + get-or-empty marker (tenure)"
TENURE_RELEASE = "txn: check-session x2, delete both (tenure)"


def _url(cluster: Cluster) -> str:
    return f"http://{cluster.nodes[0].client_address}"


def test_every_shape_commits_and_is_timed(consul_cluster: Cluster) -> None:
    with trace.agent_with_session(_url(consul_cluster)) as (_, agent, session):
        rows = trace.trace(agent, session, n=3, warmup=1)
    assert [r.name for r in rows] == [s.name for s in trace.SHAPES]
    assert all(r.samples == 3 and r.median > 0 for r in rows), rows
    text = trace.table(rows)
    assert all(f"| {s.side} | {s.name} |" in text for s in trace.SHAPES), text


def _verbs(shape_name: str, keys: trace.Keys) -> list[str]:
    shape = next(s for s in trace.SHAPES if s.name == shape_name)
    _, _, body = shape.request(keys)
    return [op["KV"]["Verb"] for op in json.loads(body or b"[]")]


def test_the_tenure_shapes_are_the_adapters_handover_transactions(
    consul_cluster: Cluster,
) -> None:
    url, _ = parse_backend_url(consul_cluster.url)
    leader, waiter = ConsulStore.from_url(url), ConsulStore.from_url(url)
    sent: dict[str, list[list[str]]] = {"leader": [], "waiter": []}
    for who, store in (("leader", leader), ("waiter", waiter)):
        txn = store.http.txn

        def recorded(ops: list[dict[str, Any]], *args: Any, _who: str = who,
                     _txn: Any = txn, **kwargs: Any) -> Any:
            sent[_who].append([op["Verb"] for op in ops])
            return _txn(ops, *args, **kwargs)

        store.http.txn = recorded  # type: ignore[method-assign]
    name = f"txn-trace/{time.monotonic_ns()}"
    try:
        for store in (leader, waiter):
            store.open_session(6.0)
        first = leader.enqueue(name, "a", b"")
        first.read_on_win = marker_key(name)
        assert isinstance(leader.try_lead(first), Won)
        second = waiter.enqueue(name, "b", b"")
        second.read_on_win = marker_key(name)
        step = waiter.try_lead(second)
        assert isinstance(step, Wait)
        sent["leader"].clear()
        sent["waiter"].clear()
        leader.withdraw(first)
        assert step.signal.wait(10)
        step.signal.close()
        assert isinstance(waiter.try_lead(second), Won)
        keys = trace.Keys("s", "own", "ahead")
        assert sent["leader"] == [_verbs(TENURE_RELEASE, keys)], sent
        assert sent["waiter"] == [_verbs(TENURE_LOCK, keys)], sent
        waiter.withdraw(second)
    finally:
        for store in (leader, waiter):
            store.close_session()
            store.close()


def test_the_checks_are_real(consul_cluster: Cluster) -> None:
    with trace.agent_with_session(_url(consul_cluster)) as (_, agent, session):
        shape = next(s for s in trace.SHAPES if s.name == TENURE_LOCK)
        keys = trace._prepare(agent, session, shape)
        agent.send("PUT", f"/v1/kv/{keys.ahead}", b"")  # someone still queued ahead
        with pytest.raises(RuntimeError, match="409"):
            agent.timed(*shape.request(keys))
        agent.send("DELETE", f"/v1/kv/{keys.ahead}")
        assert agent.timed(*shape.request(keys)) > 0
        holder = agent.send("GET", f"/v1/kv/{trace.LEADER}")[0]
        assert holder["Session"] == session
        trace._tidy(agent, keys)
