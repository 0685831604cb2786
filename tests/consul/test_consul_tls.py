"""Consul over HTTPS (``scheme=https&ca=...``) against a real agent serving TLS only: a
campaign, a waiter's blocking query and a handover work, and the blocking query waits
for its answer instead of failing. (A TLS 1.3 server -- Go's, so Consul's -- sends
session tickets after the handshake; they made the query's socket readable before any
answer, its read then blocked past the socket timeout, and every blocking query
counted as a failed one: the waiter moved to the next agent, paused, and was woken for
nothing.) About 5 s."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from renewal_kit import Renewals
from tls_kit import make_certificates

import tenure
from tenure.adapters.consul import ConsulStore
from tenure.cancel import Flag
from tenure.conformance.lab.cluster import eventually, find_binary, free_port, wait_until
from tenure.conformance.lab.processes import spawn

pytestmark = [pytest.mark.consul]


@pytest.fixture
def tls_consul(tmp_path: Path) -> Iterator[str]:
    """The URL of a one-node Consul agent serving HTTPS only (no plain HTTP port)."""
    make_certificates(tmp_path)
    port = free_port()
    config = {
        "node_name": "tls1", "datacenter": "lab", "data_dir": str(tmp_path / "data"),
        "server": True, "bootstrap_expect": 1, "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1", "advertise_addr": "127.0.0.1",
        "ports": {"http": -1, "https": port, "server": free_port(),
                  "serf_lan": free_port(), "serf_wan": free_port(), "dns": -1,
                  "grpc": -1, "grpc_tls": -1},
        "tls": {"defaults": {"ca_file": str(tmp_path / "ca.pem"),
                             "cert_file": str(tmp_path / "server.pem"),
                             "key_file": str(tmp_path / "server.key"),
                             "verify_incoming": False}},
        "session_ttl_min": "500ms", "performance": {"raft_multiplier": 1},
        "disable_update_check": True, "disable_host_node_id": True, "log_level": "INFO",
        "ui_config": {"enabled": False},
    }
    (tmp_path / "consul.json").write_text(json.dumps(config))
    process = spawn("consul-tls", [find_binary("consul", "TENURE_CONSUL_BIN"), "agent",
                                   f"-config-file={tmp_path / 'consul.json'}"],
                    tmp_path / "consul.log", cwd=tmp_path)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    base = f"https://127.0.0.1:{port}"

    def serving() -> None:
        for path in ("/v1/status/leader", "/v1/catalog/node/tls1"):
            with urllib.request.urlopen(base + path, timeout=2, context=context) as answer:
                assert json.loads(answer.read()), path
    try:
        eventually(serving, 60, f"Consul serving HTTPS on {base} (log: {tmp_path}/consul.log)")
        yield f"consul://127.0.0.1:{port}?scheme=https&ca={tmp_path}/ca.pem"
    finally:
        process.kill()


def test_a_waiters_blocking_query_over_tls_waits_for_its_answer(tls_consul: str) -> None:
    name = "tls/e"
    url = f"{tls_consul}&timeout=1"  # the socket timeout a read waited for before
    with tenure.connect(url, ttl=2, candidate_id="lead") as a, \
            tenure.connect(url, ttl=2, candidate_id="waiter") as b:
        lead = a.election(name).campaign(timeout=10)
        store = b.store
        assert isinstance(store, ConsulStore)
        moved: list[int] = []
        move_on = store.http.move_on

        def counted() -> None:
            moved.append(store.http.current)
            move_on()

        store.http.move_on = counted  # type: ignore[method-assign]
        renewals = Renewals(b, enough=3)
        cancel, won = Flag(), threading.Event()

        def wait() -> None:
            b.election(name).campaign(timeout=30, cancel=cancel).resign()
            won.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        try:
            wait_until(lambda: len(a.election(name).contenders()) == 2, 10, "queued")
            # Three renewals (~3 x 0.9 s): past the 1 s socket timeout a query's read
            # waited for before, with the waiter's blocking query in flight all along.
            assert renewals.enough.wait(30)
            assert moved == [], f"{len(moved)} blocking queries over TLS failed"
            lead.resign()
            assert won.wait(10), "the waiter did not win after the resign"
            assert moved == []
        finally:
            cancel.set()
            waiter.join(timeout=10)
