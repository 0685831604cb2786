"""The handover phase trace (conformance/benchmarks/handover_trace.py, on the socket
records of conformance/benchmarks/wiretap.py): its parsing on hand-made records (noise
left out, ZooKeeper's length prefix merged, phases that add up to the handover, a
trace out of order refused), and one short run on a lab ZooKeeper where every handover
of both tools is split into real, ordered phases. No timing is compared."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tenure.conformance.benchmarks import handover_trace as trace
from tenure.conformance.benchmarks import wiretap
from tenure.conformance.lab.fixtures import LabFactory

PARTS = ("resigned -> wake", "wake -> ask", "ask", "answer -> elected")


def tap(op: str, start: float, end: float, fd: int, head: bytes) -> dict[str, Any]:
    return {"op": op, "start": start, "end": end, "fd": fd, "thread": "t",
            "size": len(head), "head": head.decode("latin-1")}


PING = b"\x00\x00\x00\x08\xff\xff\xff\xfe\x00\x00\x00\x0b"
WATCH_EVENT = b"\xff\xff\xff\xff" + b"\xff" * 8 + b"\x00\x00\x00\x00\x00\x00\x00\x02"
REQUEST = b"\x00\x00\x00\x20\x00\x00\x00\x07\x00\x00\x00\x08/election"
ANSWER = b"\x00\x00\x00\x07" + b"\x00" * 12


@pytest.mark.unit
def test_zookeeper_records_become_messages_without_pings_or_wakeup_bytes() -> None:
    taps = [tap("send", 1.0, 1.0, 5, PING),
            tap("recv", 1.1, 1.2, 5, b"\x00\x00\x00\x10"), tap("recv", 1.2, 1.3, 5, PING[4:]),
            tap("send", 2.0, 2.0, 4, b"\x00"), tap("recv", 2.0, 2.1, 3, b"\x00"),
            tap("recv", 2.5, 2.6, 5, b"\x00\x00\x00\x30"),
            tap("recv", 2.6, 2.7, 5, WATCH_EVENT)]
    found = trace.messages(taps, "zookeeper")
    # The watch event is stamped when its length prefix arrived, with the body's head.
    assert found == [trace.Message("recv", 2.5, 2.6, 5, WATCH_EVENT)]


@pytest.mark.unit
def test_consul_renewals_are_left_out_by_their_connection() -> None:
    taps = [tap("send", 1.0, 1.0, 7, b"PUT /v1/session/renew/abc HTTP/1.1"),
            tap("recv", 1.0, 1.1, 7, b"HTTP/1.1 200 OK"),
            tap("send", 1.2, 1.2, 3, b"PUT /v1/txn HTTP/1.1")]
    assert [m.fd for m in trace.messages(taps, "consul")] == [3]


@pytest.mark.unit
def test_phases_add_up_to_the_handover_and_disorder_is_refused() -> None:
    leader = [trace.Message("send", 10.0, 10.0, 3, b"release"),
              trace.Message("recv", 10.0, 12.0, 3, b"ok")]
    waiter = [trace.Message("recv", 0.0, 5.0, 4, b"earlier answer"),
              trace.Message("recv", 10.0, 11.5, 4, b"wake"),
              trace.Message("send", 11.7, 11.7, 4, b"ask"),
              trace.Message("recv", 11.7, 13.0, 4, b"answer")]
    found = trace.phases(leader, waiter, asked=9.0, resigned=12.5, elected=13.25)
    assert found["release"] == 2.0 and found["answer -> resigned"] == 0.5
    assert found["release -> wake"] == 1.5 and found["resigned -> wake"] == -1.0
    assert sum(found[p] for p in PARTS) == pytest.approx(found["handover"]) == 0.75
    with pytest.raises(trace.TraceError, match="out of order"):
        trace.phases(leader, waiter, asked=9.0, resigned=12.5, elected=12.9)
    with pytest.raises(trace.TraceError, match="no send after"):
        trace.phases([], waiter, asked=9.0, resigned=12.5, elected=13.25)


@pytest.mark.unit
def test_the_wiretap_records_what_a_socket_sent_and_received() -> None:
    original = socket.socket.recv
    wiretap.install()
    try:
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"hello")
            assert b.recv(16) == b"hello"
            fds = (a.fileno(), b.fileno())
        taps = [t for t in wiretap.drain() if t["fd"] in fds]
    finally:
        wiretap.uninstall()
    assert socket.socket.recv is original
    assert [(t["op"], t["size"], t["head"]) for t in taps] == [("send", 5, "hello"),
                                                                ("recv", 5, "hello")]
    assert all(t["end"] >= t["start"] for t in taps)


@pytest.mark.zookeeper
@pytest.mark.slow
def test_a_short_zookeeper_run_splits_every_handover_of_both_tools(lab: LabFactory) -> None:
    cluster = lab.start("zookeeper", nodes=1)
    samples = trace.trace("zookeeper", cluster.url, ["tenure", "kazoo"], count=4, blocks=2,
                          hold=0.05, warmup=1)  # the trace's own hold: the waiter parks in it
    assert sorted(samples) == ["kazoo", "tenure"]
    for tool, handovers in samples.items():
        assert len(handovers) == 4, tool
        for found in handovers:
            assert found["release"] > 0 and found["ask"] > 0, (tool, found)
            assert sum(found[p] for p in PARTS) == pytest.approx(found["handover"], abs=1e-9)
    assert "| handover |" in trace.table(samples)
