"""Smoke test of the etcd keepalive trace (conformance/benchmarks/etcd_keepalive_trace.py):
with a tiny N on a lab etcd every way runs, each keepalive really renewed its lease (a
refused one raises in the trace), the CPU it reads is real (the gRPC and HTTP rounds
cost the client something, etcd's counter is read from its process), and the table
names every way. No timing compared."""

from __future__ import annotations

import pytest

from tenure.conformance.benchmarks import etcd_keepalive_trace as trace
from tenure.conformance.lab.cluster import Cluster

pytestmark = [pytest.mark.etcd]


def test_every_way_renews_and_is_charged(etcd_cluster: Cluster) -> None:
    node = etcd_cluster.nodes[0]
    assert node.pid is not None
    samples = trace.measure(etcd_cluster.url, node.client_address, node.pid, n=20,
                            gap=0.001, rounds=1)
    assert [s.way for s in samples] == list(trace.WAYS)
    by_way = {s.way: s for s in samples}
    assert by_way["grpc"].client_ms > 0 and by_way["http"].client_ms > 0, samples
    assert all(s.server_ms >= 0 for s in samples), samples
    text = trace.table(samples)
    assert all(f"| {way} |" in text for way in trace.WAYS), text
