"""The bench's `tenure serve` process and its HTTP contender
(conformance/benchmarks/gatewayproc.py, peers/gateway.py): the gateway's log goes to a
file that nothing has to drain (a pipe nobody read while it ran would block the gateway
after a few hundred campaigns), and the contender's campaign / keepalive / resign are
what the gateway answers. Counted, not timed (~2 s: one `tenure serve` on SQLite)."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path

import pytest

from tenure.conformance.benchmarks.gatewayproc import Gateway
from tenure.conformance.benchmarks.peers.gateway import GatewayContender

pytestmark = [pytest.mark.http, pytest.mark.sqlite]

ROUNDS = 3


def _requests(base: str, route: str, status: int) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    pattern = (rf'tenure_http_requests_total{{route="{re.escape(route)}",'
               rf'status="{status}"}} (\S+)')
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def test_the_bench_gateway_logs_to_a_file_and_answers_its_contender(tmp_path: Path) -> None:
    lost: list[str] = []
    with Gateway(f"sqlite://{tmp_path}/store.db", ttl=1.0) as gateway:
        assert gateway.process.stderr is None, "the gateway's stderr is a pipe again"
        base = gateway.url.replace("tenure-serve://", "http://")
        contender = GatewayContender(gateway.url, "bench/log", 1.0, "c1",
                                     lambda reason, _deadline: lost.append(reason))
        try:
            tokens = []
            for _ in range(ROUNDS):
                tokens.append(contender.campaign()["token"])
                contender.resign()
            kept = threading.Event()
            contender.campaign()
            # keepalives every ttl/3 while it leads: wait for two, then resign
            for _ in range(200):
                if contender.keepalives >= 2:
                    kept.set()
                    break
                kept.wait(0.02)
            contender.resign()
        finally:
            contender.close()
        campaigns = _requests(base, "/v1/elections/{name}/campaign", 200)
        resigns = _requests(base, "/v1/leaderships/{handle}", 204)
        keepalives = _requests(base, "/v1/leaderships/{handle}/keepalive", 200)
        log = gateway.log_tail(100_000)
    assert tokens == sorted(tokens) and len(set(tokens)) == ROUNDS, tokens
    assert kept.is_set(), "no keepalive was sent while the contender led"
    assert (campaigns, resigns) == (ROUNDS + 1, ROUNDS + 1)
    assert keepalives >= 2
    assert not lost, lost
    assert log.count("leadership won") == ROUNDS + 1, log[-2000:]
